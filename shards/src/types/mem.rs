//! Memory estimates for MEMORY USAGE: what a value's allocations cost, found by walking the
//! value without copying it. Aggregates look at no more than a given number of their elements
//! and extrapolate from their average, as Redis's `objectComputeSize` does, so measuring a
//! huge value costs no more than measuring a small one. Sizes are rounded up to the
//! allocator's (jemalloc's) size classes, because that is what an allocation really takes.

/// The bytes jemalloc hands out for a request of `n` bytes: its size class (8, 16, then
/// multiples of 16 up to 128, then four classes per doubling). 0 for no allocation.
pub fn alloc_size(n: usize) -> usize {
    match n {
        0 => 0,
        1..=8 => 8,
        9..=128 => n.div_ceil(16) * 16,
        _ => {
            let lg = usize::BITS - 1 - (n - 1).leading_zeros();
            let step = 1usize << (lg - 2);
            n.div_ceil(step) * step
        }
    }
}

/// The allocation behind a `Vec<T>` of capacity `cap`.
pub fn vec_bytes<T>(cap: usize) -> usize {
    alloc_size(cap * std::mem::size_of::<T>())
}

/// The allocation behind a hashbrown table of `T` that holds `cap` elements before growing:
/// a power-of-two number of buckets, each with its slot and a control byte, plus a group of
/// trailing control bytes.
pub fn table_bytes<T>(cap: usize) -> usize {
    if cap == 0 {
        return 0;
    }
    let buckets = if cap < 4 {
        4
    } else if cap < 8 {
        8
    } else {
        (cap * 8 / 7).next_power_of_two()
    };
    alloc_size(buckets * (std::mem::size_of::<T>() + 1) + 16)
}

/// How many elements to look at: `samples`, where 0 (SAMPLES 0) means all of them.
pub fn sample_limit(samples: usize) -> usize {
    if samples == 0 {
        usize::MAX
    } else {
        samples
    }
}

/// The estimated total of a per-element cost over `len` elements, from the costs of the first
/// `samples` elements of `costs` (all of them when `samples` is 0): their average times `len`.
pub fn extrapolate(costs: impl Iterator<Item = usize>, len: usize, samples: usize) -> usize {
    let (mut sum, mut seen) = (0usize, 0usize);
    for c in costs.take(sample_limit(samples)) {
        sum += c;
        seen += 1;
    }
    if seen == 0 || seen >= len {
        return sum;
    }
    (sum as f64 / seen as f64 * len as f64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes() {
        let classes = [
            (1, 8),
            (8, 8),
            (9, 16),
            (17, 32),
            (33, 48),
            (128, 128),
            (129, 160),
            (256, 256),
            (257, 320),
            (4096, 4096),
            (4097, 5120),
        ];
        for (n, c) in classes {
            assert_eq!(alloc_size(n), c, "{n}");
        }
    }

    #[test]
    fn extrapolates_from_samples() {
        assert_eq!(extrapolate([10, 20].into_iter(), 2, 5), 30);
        assert_eq!(extrapolate([10, 20, 90].into_iter(), 100, 2), 1500);
        assert_eq!(extrapolate([10, 20, 90].into_iter(), 3, 0), 120);
        assert_eq!(extrapolate(std::iter::empty(), 0, 5), 0);
    }
}
