//! The shard's own pseudo-random generator (xoshiro256**), seeded by the caller, so tests are
//! repeatable and the engine reads no global state.

/// A small, fast PRNG. Not for secrets.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 to spread the seed over the state.
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform value in `0..n`; `n` must be non-zero.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// `n` distinct positions below `len`, in random order (all of them, in order, when
    /// `n >= len`): a partial shuffle when most positions are wanted, rejection sampling when
    /// few are. Memory is bounded by `len` (the collection's own size), never by `n`.
    pub fn distinct_positions(&mut self, len: usize, n: usize) -> Vec<usize> {
        if n >= len {
            return (0..len).collect();
        }
        if n.saturating_mul(3) > len {
            let mut all: Vec<usize> = (0..len).collect();
            for i in 0..n {
                let j = i + self.below(len - i);
                all.swap(i, j);
            }
            all.truncate(n);
            return all;
        }
        let mut seen = std::collections::HashSet::with_capacity(n);
        let mut picks = Vec::with_capacity(n);
        while picks.len() < n {
            let i = self.below(len);
            if seen.insert(i) {
                picks.push(i);
            }
        }
        picks
    }
}
