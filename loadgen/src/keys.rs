//! Which key a request uses: the key distributions (uniform, Zipf, sequential) over a key
//! space of `n` indices, and the Redis Cluster slot of a key (CRC16 of its hashtag).

use rand::Rng;
use std::sync::Arc;

/// The number of Redis Cluster hash slots.
pub const SLOTS: u16 = 16384;

/// How key indices are drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    Uniform,
    /// Zipf with exponent `s`: index `i` (from 0) is drawn with weight `1 / (i + 1)^s`.
    Zipf(f64),
    Sequential,
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pattern::Uniform => write!(f, "uniform"),
            Pattern::Zipf(s) => write!(f, "zipf:{s}"),
            Pattern::Sequential => write!(f, "sequential"),
        }
    }
}

impl std::str::FromStr for Pattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(Pattern::Uniform),
            "sequential" => Ok(Pattern::Sequential),
            _ => match s.strip_prefix("zipf:").map(str::parse::<f64>) {
                Some(Ok(exp)) if exp.is_finite() && exp > 0.0 => Ok(Pattern::Zipf(exp)),
                Some(_) => Err(format!("bad Zipf exponent in {s:?} (want zipf:<s>, s > 0)")),
                None => Err(format!(
                    "unknown key pattern {s:?} (uniform, zipf:<s> or sequential)"
                )),
            },
        }
    }
}

/// Draws key indices in `0..keyspace`; one per client (sequential keeps a per-client cursor).
pub struct KeyGen {
    keyspace: u64,
    /// Cumulative Zipf weights, normalised to end at 1.0; shared between clients.
    zipf_cdf: Option<Arc<Vec<f64>>>,
    next: u64,
}

/// The cumulative distribution of Zipf(`exp`) over `keyspace` indices, built once for all clients.
pub fn zipf_cdf(keyspace: u64, exp: f64) -> Arc<Vec<f64>> {
    let mut cdf = Vec::with_capacity(keyspace as usize);
    let mut sum = 0.0;
    for i in 0..keyspace {
        sum += 1.0 / ((i + 1) as f64).powf(exp);
        cdf.push(sum);
    }
    for w in &mut cdf {
        *w /= sum;
    }
    Arc::new(cdf)
}

impl KeyGen {
    /// A generator for one client; `start` is where a sequential cursor begins.
    pub fn new(keyspace: u64, zipf_cdf: Option<Arc<Vec<f64>>>, start: u64) -> KeyGen {
        assert!(keyspace > 0);
        KeyGen {
            keyspace,
            zipf_cdf,
            next: start % keyspace,
        }
    }

    /// The next key index.
    pub fn next(&mut self, pattern: &Pattern, rng: &mut impl Rng) -> u64 {
        match pattern {
            Pattern::Uniform => rng.gen_range(0..self.keyspace),
            Pattern::Sequential => {
                let i = self.next;
                self.next = (self.next + 1) % self.keyspace;
                i
            }
            Pattern::Zipf(_) => {
                let cdf = self
                    .zipf_cdf
                    .as_ref()
                    .expect("Zipf pattern without its table");
                let u: f64 = rng.gen();
                (cdf.partition_point(|&w| w < u) as u64).min(self.keyspace - 1)
            }
        }
    }
}

/// CRC16/XMODEM, as Redis Cluster hashes keys.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of `key`: the CRC16 of its hashtag (the text between the first `{` and the
/// next `}`, when not empty) or of the whole key.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn slots_match_redis() {
        // CLUSTER KEYSLOT values from redis-server 7.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn zipf_prefers_low_indices() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut gen = KeyGen::new(1000, Some(zipf_cdf(1000, 1.0)), 0);
        let draws: Vec<u64> = (0..10_000)
            .map(|_| gen.next(&Pattern::Zipf(1.0), &mut rng))
            .collect();
        assert!(draws.iter().all(|&i| i < 1000));
        let zeros = draws.iter().filter(|&&i| i == 0).count();
        // Index 0 has probability 1/H(1000) ≈ 0.134.
        assert!((1000..1700).contains(&zeros), "{zeros}");
    }

    #[test]
    fn sequential_wraps() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut gen = KeyGen::new(3, None, 2);
        let got: Vec<u64> = (0..4)
            .map(|_| gen.next(&Pattern::Sequential, &mut rng))
            .collect();
        assert_eq!(got, [2, 0, 1, 2]);
    }
}
