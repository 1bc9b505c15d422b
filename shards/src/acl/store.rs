//! The process-wide ACL state: the users, shared by every shard, and the ACL LOG.
//!
//! Users are immutable snapshots behind `Arc`s: a change builds a new `User` and swaps it in,
//! then bumps the generation. A connection holds its user's snapshot and, when the generation
//! moved, fetches the current one by name: if the user is gone (or is a new incarnation, after
//! ACL LOAD or DELUSER and SETUSER again), the connection is closed, as Redis closes the
//! clients of a freed user.

use super::{merge_selector_args, valid_username, RuleError, User};
use crate::resp::Reply;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Where a denial happened, as ACL LOG names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogContext {
    Toplevel,
    Multi,
    Lua,
}

/// What was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogReason {
    Command,
    Key,
    Channel,
    Auth,
}

/// One ACL LOG entry.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub count: u64,
    pub reason: LogReason,
    pub context: LogContext,
    pub object: Vec<u8>,
    pub username: Vec<u8>,
    pub ctime_ms: u64,
    pub client_info: String,
}

/// Entries this close in time with the same reason, context, object and user are merged.
const LOG_GROUP_MS: u64 = 60_000;

pub struct Store {
    users: RwLock<BTreeMap<Vec<u8>, Arc<User>>>,
    next_uid: AtomicU64,
    generation: AtomicU64,
    /// The default user has nopass and is on: new connections need no AUTH.
    default_open: AtomicBool,
    /// `acl-pubsub-default allchannels`.
    pub pubsub_allchannels: AtomicBool,
    log: Mutex<VecDeque<LogEntry>>,
    /// `acllog-max-len`.
    pub log_max: AtomicUsize,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    pub fn new() -> Store {
        let mut users = BTreeMap::new();
        users.insert(b"default".to_vec(), Arc::new(User::default_user(1)));
        Store {
            users: RwLock::new(users),
            next_uid: AtomicU64::new(2),
            generation: AtomicU64::new(1),
            default_open: AtomicBool::new(true),
            pubsub_allchannels: AtomicBool::new(false),
            log: Mutex::new(VecDeque::new()),
            log_max: AtomicUsize::new(128),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Vec<u8>, Arc<User>>> {
        self.users.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Vec<u8>, Arc<User>>> {
        self.users.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes whenever any user changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self, users: &BTreeMap<Vec<u8>, Arc<User>>) {
        let open = users
            .get(b"default".as_slice())
            .is_some_and(|d| d.nopass && d.enabled);
        self.default_open.store(open, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn uid(&self) -> u64 {
        self.next_uid.fetch_add(1, Ordering::Relaxed)
    }

    fn allchannels(&self) -> bool {
        self.pubsub_allchannels.load(Ordering::Relaxed)
    }

    /// Whether connections are authenticated without AUTH (default user on and nopass).
    pub fn default_open(&self) -> bool {
        self.default_open.load(Ordering::Acquire)
    }

    pub fn get(&self, name: &[u8]) -> Option<Arc<User>> {
        self.read().get(name).cloned()
    }

    pub fn default_user(&self) -> Arc<User> {
        self.get(b"default")
            .unwrap_or_else(|| Arc::new(User::default_user(1)))
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<Arc<User>> {
        self.read().values().cloned().collect()
    }

    /// The user these credentials log in, if any.
    pub fn authenticate(&self, name: &[u8], pass: &[u8]) -> Option<Arc<User>> {
        self.get(name).filter(|u| u.password_ok(pass))
    }

    /// ACL SETUSER: all rules apply, or none (the error names the first bad one).
    pub fn setuser(&self, name: &[u8], rules: &[&[u8]]) -> Result<(), String> {
        if !valid_username(name) {
            return Err("ERR Usernames can't contain spaces or null characters".into());
        }
        let merged = merge_selector_args(rules).map_err(|i| {
            format!(
                "ERR Unmatched parenthesis in acl selector starting at '{}'.",
                String::from_utf8_lossy(rules[i])
            )
        })?;
        let mut users = self.write();
        let mut u = match users.get(name) {
            Some(u) => User::clone(u),
            None => User::new(name, 0, self.allchannels()),
        };
        for op in &merged {
            u.apply(op, self.allchannels()).map_err(|e| {
                format!(
                    "ERR Error in ACL SETUSER modifier '{}': {}",
                    String::from_utf8_lossy(op),
                    e.text()
                )
            })?;
        }
        if u.uid == 0 {
            u.uid = self.uid();
        }
        users.insert(name.to_vec(), Arc::new(u));
        self.changed(&users);
        Ok(())
    }

    /// ACL DELUSER: how many of these users existed.
    pub fn deluser(&self, names: &[&[u8]]) -> Result<usize, String> {
        if names.iter().any(|n| *n == b"default") {
            return Err("ERR The 'default' user cannot be removed".into());
        }
        let mut users = self.write();
        let n = names.iter().filter(|n| users.remove(**n).is_some()).count();
        if n > 0 {
            self.changed(&users);
        }
        Ok(n)
    }

    /// `requirepass`: the default user's only password, or nopass when empty.
    pub fn set_default_password(&self, pass: Option<&[u8]>) {
        let mut users = self.write();
        let mut d = users
            .get(b"default".as_slice())
            .map(|u| User::clone(u))
            .unwrap_or_else(|| User::default_user(1));
        let _ = d.apply(b"resetpass", false);
        match pass {
            Some(p) => {
                let mut op = b">".to_vec();
                op.extend_from_slice(p);
                let _ = d.apply(&op, false);
            }
            None => {
                let _ = d.apply(b"nopass", false);
            }
        }
        users.insert(b"default".to_vec(), Arc::new(d));
        self.changed(&users);
    }

    /// Users from `user …` config directives, applied at startup (the default user is reset
    /// first when redefined).
    pub fn load_config_users(&self, defs: &[Vec<Vec<u8>>]) -> Result<(), String> {
        for def in defs {
            let Some((name, rules)) = def.split_first() else {
                continue;
            };
            let rules: Vec<&[u8]> = rules.iter().map(|r| r.as_slice()).collect();
            let merged = merge_selector_args(&rules)
                .map_err(|_| "Unmatched parenthesis in selector definition".to_string())?;
            let mut users = self.write();
            let mut u = match users.get(name) {
                Some(d) if name == b"default" => {
                    let mut d = User::clone(d);
                    let _ = d.apply(b"reset", self.allchannels());
                    d
                }
                Some(_) => {
                    return Err(format!(
                        "Duplicate user '{}' found",
                        String::from_utf8_lossy(name)
                    ))
                }
                None => User::new(name, self.uid(), self.allchannels()),
            };
            for op in &merged {
                u.apply(op, self.allchannels()).map_err(|e| {
                    format!(
                        "Error in user declaration '{}': {}",
                        String::from_utf8_lossy(op),
                        e.text()
                    )
                })?;
            }
            users.insert(name.clone(), Arc::new(u));
            self.changed(&users);
        }
        Ok(())
    }

    /// ACL LOAD (and the aclfile at startup): the whole file or nothing. The error is Redis's
    /// one-line summary of every problem found.
    pub fn load_file(&self, path: &str) -> Result<(), String> {
        let text = std::fs::read(path).map_err(|e| {
            format!(
                "Error loading ACLs, opening file '{path}': {}",
                crate::util::strerror(&e)
            )
        })?;
        let mut errors = String::new();
        let mut fresh: BTreeMap<Vec<u8>, User> = BTreeMap::new();
        let allch = self.allchannels();
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = trim(raw, b" \t\r\n");
            let linenum = i + 1;
            if line.is_empty() {
                continue;
            }
            let words: Vec<&[u8]> = line
                .split(|&b| b == b' ')
                .filter(|w| !w.is_empty())
                .collect();
            if words.is_empty() {
                continue;
            }
            if words[0] != b"user" || words.len() < 2 {
                errors.push_str(&format!(
                    "{path}:{linenum} should start with user keyword followed by the username. "
                ));
                continue;
            }
            let name = words[1];
            if !valid_username(name) {
                errors.push_str(&format!(
                    "'{path}:{linenum}: username '{}' contains invalid characters. ",
                    String::from_utf8_lossy(name)
                ));
                continue;
            }
            if fresh.contains_key(name) {
                errors.push_str(&format!(
                    "WARNING: Duplicate user '{}' found on line {linenum}. ",
                    String::from_utf8_lossy(name)
                ));
                continue;
            }
            let mut u = User::new(name, 0, allch);
            match merge_selector_args(&words[2..]) {
                Err(_) => errors.push_str(&format!(
                    "{path}:{linenum}: Unmatched parenthesis in selector definition."
                )),
                Ok(ops) => {
                    let mut syntax = false;
                    for op in &ops {
                        let op = trim(op, b"\t\r\n");
                        if let Err(e) = u.apply(op, allch) {
                            if e == RuleError::Unknown {
                                errors.push_str(&format!(
                                    "{path}:{linenum}: Error in applying operation '{}': {}. ",
                                    String::from_utf8_lossy(op),
                                    e.text()
                                ));
                            } else if !syntax {
                                errors.push_str(&format!("{path}:{linenum}: {}. ", e.text()));
                                syntax = true;
                            }
                        }
                    }
                }
            }
            fresh.insert(name.to_vec(), u);
        }
        if !errors.is_empty() {
            errors.push_str(
                "WARNING: ACL errors detected, no change to the previously active ACL rules was performed",
            );
            return Err(errors);
        }
        let mut users = self.write();
        let default_uid = users.get(b"default".as_slice()).map_or(1, |d| d.uid);
        let mut next: BTreeMap<Vec<u8>, Arc<User>> = BTreeMap::new();
        for (name, mut u) in fresh {
            u.uid = if name == b"default" {
                default_uid
            } else {
                self.uid()
            };
            next.insert(name, Arc::new(u));
        }
        next.entry(b"default".to_vec())
            .or_insert_with(|| Arc::new(User::default_user(default_uid)));
        *users = next;
        self.changed(&users);
        Ok(())
    }

    /// ACL SAVE: every user as a `user` line, written to a temporary file then renamed.
    pub fn save_file(&self, path: &str) -> std::io::Result<()> {
        let mut text = Vec::new();
        for u in self.users() {
            text.extend_from_slice(&u.line());
            text.push(b'\n');
        }
        let tmp = format!("{path}.tmp-{}", std::process::id());
        std::fs::write(&tmp, &text)?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }

    /// Records a denial (or merges it into a recent entry like it).
    pub fn log(&self, mut e: LogEntry) {
        let mut log = lock(&self.log);
        let similar = log.iter().take(10).position(|o| {
            o.reason == e.reason
                && o.context == e.context
                && o.ctime_ms.abs_diff(e.ctime_ms) <= LOG_GROUP_MS
                && o.object == e.object
                && o.username == e.username
        });
        if let Some(i) = similar {
            if let Some(mut o) = log.remove(i) {
                o.count += 1;
                o.ctime_ms = e.ctime_ms;
                o.client_info = std::mem::take(&mut e.client_info);
                log.push_front(o);
            }
            return;
        }
        log.push_front(e);
        let max = self.log_max.load(Ordering::Relaxed);
        log.truncate(max);
    }

    pub fn log_reset(&self) {
        lock(&self.log).clear();
    }

    /// ACL LOG [count]'s reply.
    pub fn log_reply(&self, count: usize, now_ms: u64, out: &mut Reply) {
        let log = lock(&self.log);
        let n = count.min(log.len());
        out.array(n);
        for e in log.iter().take(n) {
            out.map(7);
            out.bulk(b"count");
            out.int(e.count as i64);
            out.bulk(b"reason");
            out.bulk(match e.reason {
                LogReason::Command => b"command".as_slice(),
                LogReason::Key => b"key",
                LogReason::Channel => b"channel",
                LogReason::Auth => b"auth",
            });
            out.bulk(b"context");
            out.bulk(match e.context {
                LogContext::Toplevel => b"toplevel".as_slice(),
                LogContext::Multi => b"multi",
                LogContext::Lua => b"lua",
            });
            out.bulk(b"object");
            out.bulk(&e.object);
            out.bulk(b"username");
            out.bulk(&e.username);
            out.bulk(b"age-seconds");
            out.double(now_ms.saturating_sub(e.ctime_ms) as f64 / 1000.0);
            out.bulk(b"client-info");
            out.bulk(e.client_info.as_bytes());
        }
    }
}

fn trim<'a>(s: &'a [u8], set: &[u8]) -> &'a [u8] {
    let start = s.iter().position(|b| !set.contains(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !set.contains(b))
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}
