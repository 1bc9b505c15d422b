//! MEMORY USAGE's estimates (`Value::heap_estimate`) against what building the value really
//! allocated. A counting allocator tracks each thread's live bytes, rounded to jemalloc's size
//! classes as the server's allocator rounds them, so a value's true cost is the change in its
//! thread's live bytes while it is built.

use shards::types::hash::{Hash, Limits as HashLimits};
use shards::types::list::{End, Fill};
use shards::types::mem::alloc_size;
use shards::types::zset::{Limits as ZSetLimits, ZSet};
use shards::types::{List, Set, Str, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn add(delta: i64) {
    let _ = LIVE.try_with(|l| l.set(l.get() + delta));
}

// SAFETY: every call is passed on to the system allocator unchanged; the counter only adds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(alloc_size(layout.size()) as i64);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(alloc_size(layout.size()) as i64));
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(alloc_size(new_size) as i64 - alloc_size(layout.size()) as i64);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> i64 {
    LIVE.with(|l| l.get())
}

/// Builds a value, returning it with the bytes it holds on the heap.
fn measured(build: impl FnOnce() -> Value) -> (Value, usize) {
    let before = live();
    let v = build();
    (v, (live() - before) as usize)
}

const HASH: HashLimits = HashLimits {
    max_entries: 128,
    max_value: 64,
};
const ZSET: ZSetLimits = ZSetLimits {
    max_entries: 128,
    max_value: 64,
};

/// A member long enough to live on the heap in every encoding.
fn long(i: usize) -> Vec<u8> {
    format!("member:{i:032}").into_bytes()
}

fn values(n: usize) -> Vec<(&'static str, Value, usize)> {
    let hash = measured(|| {
        let mut h = Hash::new();
        for i in 0..n {
            h.set(&long(i), format!("v{i}").as_bytes(), HASH);
        }
        Value::Hash(h)
    });
    let set = measured(|| {
        let mut s = Set::for_member(b"x");
        for i in 0..n {
            s.add(&long(i), 512);
        }
        Value::Set(s)
    });
    let intset = measured(|| {
        let mut s = Set::for_member(b"1");
        for i in 0..n.min(512) {
            s.add(i.to_string().as_bytes(), 512);
        }
        Value::Set(s)
    });
    let zset = measured(|| {
        let mut z = ZSet::new();
        for i in 0..n {
            z.add(&long(i), i as f64, ZSET);
        }
        Value::ZSet(z)
    });
    let list = measured(|| {
        let mut l = List::new();
        for i in 0..n {
            l.push(End::Tail, &long(i), Fill::new(-2));
        }
        Value::List(l)
    });
    let string = measured(|| Value::Str(Str::from_bytes(&vec![b'x'; n.max(100)])));
    vec![
        ("hash", hash.0, hash.1),
        ("set", set.0, set.1),
        ("intset", intset.0, intset.1),
        ("zset", zset.0, zset.1),
        ("list", list.0, list.1),
        ("string", string.0, string.1),
    ]
}

/// Small values, measured whole (SAMPLES 0): the estimate is within 25% of the truth.
#[test]
fn small_values_are_measured_closely() {
    for n in [1, 10, 100, 1000] {
        for (name, v, truth) in values(n) {
            let est = v.heap_estimate(0);
            let (lo, hi) = (truth * 3 / 4, truth * 5 / 4 + 16);
            assert!(
                (lo..=hi).contains(&est),
                "{name} of {n}: estimated {est}, really {truth}"
            );
            // The default sampling is as close for values of uniform elements.
            let sampled = v.heap_estimate(5);
            assert!(
                (lo..=hi).contains(&sampled),
                "{name} of {n}, sampled: estimated {sampled}, really {truth}"
            );
        }
    }
}

/// A value of a million elements is measured in well under a millisecond's worth of work per
/// sample, and within a factor of two of what it holds.
#[test]
fn huge_values_are_measured_quickly() {
    for (name, v, truth) in values(1_000_000) {
        let start = Instant::now();
        let est = v.heap_estimate(5);
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(50),
            "{name}: measuring took {took:?}"
        );
        assert!(
            (truth / 2..=truth * 2).contains(&est),
            "{name}: estimated {est}, really {truth}"
        );
    }
}
