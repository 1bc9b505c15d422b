//! Commands: the declaration type, the registry of every command, argument parsing helpers, key
//! extraction, and execution against one shard. Families live in their own files (`string`,
//! `keys`, `server`, …) as Redis keeps `t_string.c`, `db.c`, …; each declares its commands beside
//! their code.

pub mod args;
pub mod bitmap;
pub mod cluster;
pub mod dump;
pub mod geo;
pub mod hash;
pub mod hll;
pub mod info;
pub mod keys;
pub mod list;
pub mod multi;
pub mod pubsub;

pub mod registry;
pub mod repl;
pub mod script;
pub mod search;
pub mod server;
pub mod set;
pub mod sort;
pub mod spec;
pub mod stream;
pub mod string;
pub mod zset;

pub use args::Args;
pub use registry::{lookup, Lookup};
pub use spec::*;

use crate::resp::Reply;

/// One command invocation against a shard.
pub struct Call<'a> {
    /// The arguments, the command name first. Arity has been checked.
    pub argv: &'a [&'a [u8]],
    /// The connection's selected database.
    pub db: usize,
    /// The current time, Unix milliseconds.
    pub now_ms: u64,
    /// The current time, Unix microseconds.
    pub now_us: u64,
    /// Where the reply goes.
    pub out: Reply<'a>,
}

impl<'a> Call<'a> {
    /// A cursor over the arguments after the first `skip` (usually the name and the keys).
    pub fn args(&self, skip: usize) -> Args<'a> {
        Args::new(self.argv, skip)
    }
}

/// The positions in `argv` of a command's keys, per its key specs (or its `getkeys`).
/// Positions are always within `argv`. Commands whose arguments are malformed may yield fewer
/// keys; the command itself then reports the error.
pub fn key_positions(spec: &CommandSpec, argv: &[&[u8]], out: &mut Vec<usize>) {
    out.clear();
    if let Some(f) = spec.getkeys {
        f(argv, out);
        out.retain(|&p| p < argv.len());
        return;
    }
    let argc = argv.len() as i64;
    for ks in spec.keys {
        if ks.flags & kflag::NOT_KEY != 0 {
            continue;
        }
        let first = match ks.begin {
            BeginSearch::Index(i) => i as i64,
            BeginSearch::Unknown => continue,
            BeginSearch::Keyword { keyword, startfrom } => {
                let found = if startfrom >= 0 {
                    (startfrom as i64..argc).find(|&i| util_eq(argv[i as usize], keyword))
                } else {
                    let start = argc + startfrom as i64;
                    (1..=start.max(0))
                        .rev()
                        .find(|&i| i < argc && util_eq(argv[i as usize], keyword))
                };
                match found {
                    Some(i) => i + 1,
                    None => continue,
                }
            }
        };
        if first >= argc || first < 1 {
            continue;
        }
        match ks.find {
            FindKeys::Range {
                lastkey,
                step,
                limit,
            } => {
                let step = step.max(1) as i64;
                let last = if lastkey >= 0 {
                    first + lastkey as i64
                } else if limit <= 1 {
                    argc + lastkey as i64
                } else {
                    first + (argc - first) / limit as i64 + lastkey as i64
                };
                let last = last.min(argc - 1);
                let mut i = first;
                while i <= last {
                    out.push(i as usize);
                    i += step;
                }
            }
            FindKeys::Unknown => {}
            FindKeys::Keynum {
                keynumidx,
                firstkey,
                step,
            } => {
                let idx = first + keynumidx as i64;
                if idx >= argc {
                    continue;
                }
                let Some(n) = crate::util::parse_i64(argv[idx as usize]) else {
                    continue;
                };
                if n <= 0 {
                    continue;
                }
                let start = first + firstkey as i64;
                let step = step.max(1) as i64;
                let mut i = start;
                for _ in 0..n {
                    if i >= argc {
                        break;
                    }
                    out.push(i as usize);
                    i += step;
                }
            }
        }
    }
}

fn util_eq(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// The arguments Redis hides from SLOWLOG and MONITOR (credentials): AUTH's, the two after
/// HELLO's AUTH, ACL SETUSER's user and rules, and the values CONFIG SET gives to
/// `requirepass` / `masterauth`.
pub fn redacted(argv: &[&[u8]]) -> Vec<usize> {
    let is = |i: usize, w: &str| {
        argv.get(i)
            .is_some_and(|a| a.eq_ignore_ascii_case(w.as_bytes()))
    };
    if is(0, "auth") {
        return (1..argv.len()).collect();
    }
    if is(0, "hello") {
        return match (2..argv.len()).find(|&i| is(i, "auth")) {
            Some(i) => (i + 1..(i + 3).min(argv.len())).collect(),
            None => Vec::new(),
        };
    }
    if is(0, "acl") && is(1, "setuser") {
        return (2..argv.len()).collect();
    }
    if is(0, "config") && is(1, "set") {
        return (2..argv.len())
            .step_by(2)
            .filter(|&i| is(i, "requirepass") || is(i, "masterauth"))
            .map(|i| i + 1)
            .filter(|&i| i < argv.len())
            .collect();
    }
    Vec::new()
}

/// The error reply for a command name that is not in the registry.
pub fn unknown_command_error(argv: &[&[u8]]) -> crate::Error {
    let name = argv
        .first()
        .map(|a| String::from_utf8_lossy(a))
        .unwrap_or_default();
    let mut args = String::new();
    for a in argv.iter().skip(1) {
        if args.len() >= 128 {
            break;
        }
        let room = 128 - args.len();
        let text = String::from_utf8_lossy(a);
        let text: String = text.chars().take(room).collect();
        args.push_str(&format!("'{text}' "));
    }
    let name: String = name.chars().take(128).collect();
    crate::Error::UnknownCommand(format!(
        "ERR unknown command '{name}', with args beginning with: {args}"
    ))
}
