//! SLOWLOG: commands whose execution took longer than `slowlog-log-slower-than`, per shard.
//!
//! Each shard logs the commands it executes; ids come from one process-wide counter, so SLOWLOG
//! GET merges the shards' logs newest first and the ids read as Redis's do. What is timed is the
//! command's own execution on the shard that owns its keys (as Redis times `call()`), not the
//! hop to it. Arguments are trimmed as Redis trims them: at most 32 (the last saying how many
//! more there were), each at most 128 bytes.

use crate::resp::Reply;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

const MAX_ARGS: usize = 32;
const MAX_STRING: usize = 128;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
pub struct Entry {
    pub id: u64,
    pub time_s: u64,
    pub duration_us: u64,
    pub args: Vec<Vec<u8>>,
    pub addr: String,
    pub name: String,
}

pub struct SlowLog {
    /// Commands taking at least this many clock ticks are logged (u64::MAX: never).
    pub threshold_ticks: u64,
    pub max_len: usize,
    entries: VecDeque<Entry>,
}

impl Default for SlowLog {
    fn default() -> Self {
        SlowLog {
            threshold_ticks: u64::MAX,
            max_len: 128,
            entries: VecDeque::new(),
        }
    }
}

/// The arguments as the log keeps them.
fn trimmed(argv: &[&[u8]]) -> Vec<Vec<u8>> {
    let n = argv.len().min(MAX_ARGS);
    let hidden = crate::cmd::redacted(argv);
    let mut out = Vec::with_capacity(n);
    for (j, a) in argv.iter().take(n).enumerate() {
        if n != argv.len() && j == n - 1 {
            out.push(format!("... ({} more arguments)", argv.len() - n + 1).into_bytes());
        } else if hidden.contains(&j) {
            out.push(b"(redacted)".to_vec());
        } else if a.len() > MAX_STRING {
            let mut s = a[..MAX_STRING].to_vec();
            s.extend_from_slice(format!("... ({} more bytes)", a.len() - MAX_STRING).as_bytes());
            out.push(s);
        } else {
            out.push(a.to_vec());
        }
    }
    out
}

impl SlowLog {
    pub fn record(
        &mut self,
        argv: &[&[u8]],
        duration_us: u64,
        time_s: u64,
        client: (String, String),
    ) {
        if self.max_len == 0 {
            return;
        }
        self.entries.push_front(Entry {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            time_s,
            duration_us,
            args: trimmed(argv),
            addr: client.0,
            name: client.1,
        });
        self.entries.truncate(self.max_len);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn reset(&mut self) {
        self.entries.clear();
    }

    /// The newest `count` entries.
    pub fn newest(&self, count: usize) -> Vec<Entry> {
        self.entries.iter().take(count).cloned().collect()
    }

    /// Applies `slowlog-max-len` (trimming the log, as Redis does at once).
    pub fn set_max_len(&mut self, n: usize) {
        self.max_len = n;
        self.entries.truncate(n);
    }
}

/// SLOWLOG GET's reply for entries already merged, newest first.
pub fn reply(entries: &[Entry], out: &mut Reply) {
    out.array(entries.len());
    for e in entries {
        out.array(6);
        out.int(e.id as i64);
        out.int(e.time_s as i64);
        out.int(e.duration_us as i64);
        out.array(e.args.len());
        for a in &e.args {
            out.bulk(a);
        }
        out.bulk(e.addr.as_bytes());
        out.bulk(e.name.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_trimmed_as_redis_trims_them() {
        let long = vec![b'x'; 200];
        let args: Vec<&[u8]> = vec![b"set", b"k", &long];
        let t = trimmed(&args);
        assert_eq!(t[2].len(), 128 + "... (72 more bytes)".len());
        assert!(t[2].ends_with(b"... (72 more bytes)"));
        let many: Vec<Vec<u8>> = (0..40).map(|i| format!("a{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = many.iter().map(|a| a.as_slice()).collect();
        let t = trimmed(&refs);
        assert_eq!(t.len(), 32);
        assert_eq!(t[31], b"... (9 more arguments)");
        assert_eq!(t[30], b"a30");
        let auth: Vec<&[u8]> = vec![b"AUTH", b"u", b"p"];
        assert_eq!(
            trimmed(&auth),
            vec![
                b"AUTH".to_vec(),
                b"(redacted)".to_vec(),
                b"(redacted)".to_vec()
            ]
        );
        let cfg: Vec<&[u8]> = vec![b"config", b"set", b"hz", b"10", b"requirepass", b"x"];
        assert_eq!(trimmed(&cfg)[3], b"10");
        assert_eq!(trimmed(&cfg)[5], b"(redacted)");
    }

    #[test]
    fn the_log_keeps_the_newest_entries() {
        let mut l = SlowLog::default();
        l.set_max_len(2);
        for i in 0..3u64 {
            l.record(&[b"get"], i, 0, (String::new(), String::new()));
        }
        let e = l.newest(10);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].duration_us, 2);
        assert!(e[0].id > e[1].id);
        l.set_max_len(1);
        assert_eq!(l.len(), 1);
    }
}
