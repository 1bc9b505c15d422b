//! Redis's partial quicksort (`pqsort`), reproduced step for step because clients can see
//! its choices: when only the first positions of a sorted result are wanted (a search with
//! COUNT below the number of matches, SORT with LIMIT), Redis runs this Bentley–McIlroy
//! quicksort (NetBSD's `qsort`) that skips the parts of the array outside the wanted range.
//! It is not stable, so the order among equal elements — and which of them make the cut — is
//! the one these exact pivot choices and swaps produce. (Redis 7.0's copy has no switch to
//! insertion sort after a partition that swapped nothing; later copies do.)
//!
//! After [`partial_sort_by`], positions `0..=last` hold what a full sort would put there
//! (up to the order of equal elements); the rest is in no particular order.

use std::cmp::Ordering;

/// Sorts `v` by `cmp` enough that `v[..=last]` is in order and holds the smallest elements,
/// moving elements exactly as Redis's `pqsort(v, len, size, cmp, 0, last)` does.
pub fn partial_sort_by<T>(v: &mut [T], last: usize, cmp: impl Fn(&T, &T) -> Ordering) {
    if !v.is_empty() {
        sort_range(v, 0, 0, last, &cmp);
    }
}

/// Whether the part starting at position `base` (of the whole array) with `len` elements lies
/// entirely before or entirely after the wanted positions `lo..=hi`.
fn outside(base: usize, len: usize, lo: usize, hi: usize) -> bool {
    (lo < base && hi < base) || (lo >= base + len && hi >= base + len)
}

/// Straight insertion sort, for small parts.
fn insertion<T>(v: &mut [T], cmp: &impl Fn(&T, &T) -> Ordering) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && cmp(&v[j - 1], &v[j]) == Ordering::Greater {
            v.swap(j, j - 1);
            j -= 1;
        }
    }
}

/// The index of the median of three, with the comparisons in the classic order.
fn median3<T>(v: &[T], a: usize, b: usize, c: usize, cmp: &impl Fn(&T, &T) -> Ordering) -> usize {
    let lt = |x: usize, y: usize| cmp(&v[x], &v[y]) == Ordering::Less;
    let gt = |x: usize, y: usize| cmp(&v[x], &v[y]) == Ordering::Greater;
    if lt(a, b) {
        if lt(b, c) {
            b
        } else if lt(a, c) {
            c
        } else {
            a
        }
    } else if gt(b, c) {
        b
    } else if lt(a, c) {
        a
    } else {
        c
    }
}

/// Swaps the `n` elements from `a` pairwise with the `n` from `b`, one pair after another.
fn swap_blocks<T>(v: &mut [T], a: usize, b: usize, n: usize) {
    for i in 0..n {
        v.swap(a + i, b + i);
    }
}

/// Sorts `v` (which starts at position `base` of the whole array) as far as `lo..=hi` needs.
fn sort_range<T>(
    mut v: &mut [T],
    mut base: usize,
    lo: usize,
    hi: usize,
    cmp: &impl Fn(&T, &T) -> Ordering,
) {
    loop {
        let n = v.len();
        if n < 7 {
            insertion(v, cmp);
            return;
        }
        // The pivot: the middle element, the median of three for mid sizes, the median of
        // three medians (Tukey's ninther) for large ones. It goes to the front.
        let mut pm = n / 2;
        if n > 7 {
            let (mut pl, mut pn) = (0, n - 1);
            if n > 40 {
                let d = n / 8;
                pl = median3(v, pl, pl + d, pl + 2 * d, cmp);
                pm = median3(v, pm - d, pm, pm + d, cmp);
                pn = median3(v, pn - 2 * d, pn - d, pn, cmp);
            }
            pm = median3(v, pl, pm, pn, cmp);
        }
        v.swap(0, pm);
        // Three-way partition: elements equal to the pivot gather at both ends (before `pa`
        // and after `pd`), smaller ones before `pb`, larger ones after `pc`.
        let (mut pa, mut pb, mut pc, mut pd) = (1, 1, n - 1, n - 1);
        loop {
            while pb <= pc {
                match cmp(&v[pb], &v[0]) {
                    Ordering::Greater => break,
                    Ordering::Equal => {
                        v.swap(pa, pb);
                        pa += 1;
                    }
                    Ordering::Less => {}
                }
                pb += 1;
            }
            while pb <= pc {
                match cmp(&v[pc], &v[0]) {
                    Ordering::Less => break,
                    Ordering::Equal => {
                        v.swap(pc, pd);
                        pd -= 1;
                    }
                    Ordering::Greater => {}
                }
                pc -= 1;
            }
            if pb > pc {
                break;
            }
            v.swap(pb, pc);
            pb += 1;
            pc -= 1;
        }
        // Move the equal elements from the ends to the middle.
        let r = pa.min(pb - pa);
        swap_blocks(v, 0, pb - r, r);
        let r = (pd - pc).min(n - pd - 1);
        swap_blocks(v, pb, n - r, r);
        let smaller = pb - pa;
        if smaller > 1 && !outside(base, smaller, lo, hi) {
            sort_range(&mut v[..smaller], base, lo, hi, cmp);
        }
        let larger = pd - pc;
        if larger <= 1 || outside(base + n - larger, larger, lo, hi) {
            return;
        }
        base += n - larger;
        v = &mut v[n - larger..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The wanted prefix equals a full sort's, whatever the input.
        #[test]
        fn prefix_is_sorted(mut v in prop::collection::vec(0u8..20, 0..200), last in 0usize..200) {
            let mut sorted = v.clone();
            sorted.sort();
            let last = last.min(v.len().saturating_sub(1));
            partial_sort_by(&mut v, last, |a, b| a.cmp(b));
            if !v.is_empty() {
                prop_assert_eq!(&v[..=last], &sorted[..=last]);
            }
            v.sort();
            prop_assert_eq!(v, sorted);
        }
    }
}
