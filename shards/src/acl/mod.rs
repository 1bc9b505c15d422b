//! Access control lists: users, Redis 7.0's rule language, and the permission check every
//! command passes.
//!
//! A user has flags (on/off, nopass, payload sanitizing), SHA-256 password hashes and one or
//! more *selectors*: the root selector, changed by rules given outside parentheses, and extra
//! selectors `(…)`. A command is allowed when any selector allows the command itself, every key
//! it names (with the access its key specs declare: `%R~` for reads, `%W~` for writes) and every
//! channel it publishes or subscribes to.
//!
//! Commands are numbered once, from the command table ([`CmdIndex`]); a selector keeps one bit
//! per command (subcommands have their own), so categories, `+cmd`, `-cmd|sub` all reduce to
//! bit operations, and the check is a bit test plus, for restricted users, key and channel
//! pattern matches. The last bit marks "+@all": the user may run commands added later, which
//! decides whether `ACL LIST` describes the bitmap from `+@all` or from `-@all`.
//!
//! The process-wide state (the users, the ACL LOG) is [`Store`], in `store.rs`; `describe.rs`
//! turns a selector back into rules, as ACL LIST, GETUSER and SAVE show them.

mod describe;
mod store;

pub use store::{LogContext, LogEntry, LogReason, Store};

use crate::cmd::spec::{flag, kflag, CommandSpec};
use crate::cmd::{key_positions, registry, Lookup};
use crate::glob;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Bits in a selector's command bitmap; the last one is the "+@all" marker.
const BITS: usize = 1024;
const FUTURE_BIT: usize = BITS - 1;

/// Key pattern permissions.
pub const PERM_READ: u8 = 1;
pub const PERM_WRITE: u8 = 2;
const PERM_ALL: u8 = PERM_READ | PERM_WRITE;

/// One command (or subcommand) of the index.
pub struct CmdInfo {
    pub spec: &'static CommandSpec,
    /// The container's id, for subcommands.
    pub parent: Option<usize>,
    /// `get` or `config|get`.
    pub fullname: String,
    pub categories: u32,
    /// Ids of the subcommands, for containers.
    pub subs: Vec<usize>,
}

/// Every command of the table with a dense id, in the table's order.
pub struct CmdIndex {
    pub cmds: Vec<CmdInfo>,
    /// Ids of the top-level commands.
    pub top: Vec<usize>,
    by_ptr: HashMap<usize, usize, ahash::RandomState>,
    by_name: HashMap<String, usize, ahash::RandomState>,
}

impl CmdIndex {
    fn build() -> CmdIndex {
        let mut ix = CmdIndex {
            cmds: Vec::new(),
            top: Vec::new(),
            by_ptr: HashMap::default(),
            by_name: HashMap::default(),
        };
        for spec in registry::all() {
            let id = ix.add(spec, None, spec.name.to_string());
            ix.top.push(id);
            for sub in spec.subcommands {
                let sid = ix.add(sub, Some(id), format!("{}|{}", spec.name, sub.name));
                ix.cmds[id].subs.push(sid);
            }
        }
        assert!(
            ix.cmds.len() < FUTURE_BIT,
            "command index overflows ACL bitmaps"
        );
        ix
    }

    fn add(
        &mut self,
        spec: &'static CommandSpec,
        parent: Option<usize>,
        fullname: String,
    ) -> usize {
        let id = self.cmds.len();
        self.by_ptr.insert(spec as *const _ as usize, id);
        self.by_name.insert(fullname.clone(), id);
        self.cmds.push(CmdInfo {
            spec,
            parent,
            fullname,
            categories: spec.acl_categories(),
            subs: Vec::new(),
        });
        id
    }

    /// The id of a looked-up command.
    pub fn id_of(&self, spec: &'static CommandSpec) -> Option<usize> {
        self.by_ptr.get(&(spec as *const _ as usize)).copied()
    }

    /// A command by name, `name` or `container|sub`, ignoring case.
    pub fn find(&self, name: &[u8]) -> Option<usize> {
        let lower = std::str::from_utf8(name).ok()?.to_ascii_lowercase();
        self.by_name.get(&lower).copied()
    }
}

/// The command index, built on first use.
pub fn index() -> &'static CmdIndex {
    static INDEX: OnceLock<CmdIndex> = OnceLock::new();
    INDEX.get_or_init(CmdIndex::build)
}

/// A category by name (without `@`), ignoring case.
pub fn category(name: &[u8]) -> Option<u32> {
    crate::cmd::spec::acl::NAMES
        .iter()
        .find(|(_, n)| n.as_bytes().eq_ignore_ascii_case(name))
        .map(|(bit, _)| *bit)
}

#[derive(Clone, PartialEq, Eq)]
struct Bits([u64; BITS / 64]);

impl Bits {
    fn get(&self, id: usize) -> bool {
        id < BITS && self.0[id / 64] & (1 << (id % 64)) != 0
    }
    fn put(&mut self, id: usize, on: bool) {
        if id < BITS {
            if on {
                self.0[id / 64] |= 1 << (id % 64);
            } else {
                self.0[id / 64] &= !(1 << (id % 64));
            }
        }
    }
}

/// Why a rule was refused; `text` is Redis's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleError {
    Unknown,
    Syntax,
    KeyAfterAll,
    ChannelAfterAll,
    NoSuchPassword,
    BadHash,
    SubcommandFirstArg,
}

impl RuleError {
    pub fn text(self) -> &'static str {
        match self {
            RuleError::Unknown => "Unknown command or category name in ACL",
            RuleError::Syntax => "Syntax error",
            RuleError::KeyAfterAll => "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns",
            RuleError::ChannelAfterAll => "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels",
            RuleError::NoSuchPassword => {
                "The password you are trying to remove from the user does not exist"
            }
            RuleError::BadHash => "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters",
            RuleError::SubcommandFirstArg => "Allowing first-arg of a subcommand is not supported",
        }
    }
}

/// A set of permissions: commands, keys, channels.
#[derive(Clone)]
pub struct Selector {
    root: bool,
    allkeys: bool,
    allchannels: bool,
    allcommands: bool,
    bits: Bits,
    /// First arguments allowed for otherwise denied commands (`+select|0`), by command id.
    firstargs: Vec<(usize, Vec<Vec<u8>>)>,
    keys: Vec<(Vec<u8>, u8)>,
    channels: Vec<Vec<u8>>,
}

/// Whether a pattern or name contains whitespace or NUL (not allowed in ACL rules).
fn has_spaces(s: &[u8]) -> bool {
    s.iter()
        .any(|&b| b == 0 || b == b' ' || (b'\t'..=b'\r').contains(&b))
}

impl Selector {
    fn new(root: bool, allchannels: bool) -> Selector {
        Selector {
            root,
            allkeys: false,
            allchannels,
            allcommands: false,
            bits: Bits([0; BITS / 64]),
            firstargs: Vec::new(),
            keys: Vec::new(),
            channels: Vec::new(),
        }
    }

    fn set_bit(&mut self, id: usize, on: bool) {
        self.bits.put(id, on);
        if !on {
            self.allcommands = false;
        }
    }

    /// Allows or denies a command and, for a container, all its subcommands.
    fn change(&mut self, id: usize, on: bool) {
        let ix = index();
        self.set_bit(id, on);
        self.firstargs.retain(|(c, _)| *c != id);
        for &s in &ix.cmds[id].subs {
            self.set_bit(s, on);
        }
    }

    fn change_category(&mut self, cat: u32, on: bool) {
        let ix = index();
        for &id in &ix.top {
            if ix.cmds[id].categories & cat != 0 {
                self.change(id, on);
            }
            for &s in &ix.cmds[id].subs {
                if ix.cmds[s].categories & cat != 0 {
                    self.change(s, on);
                }
            }
        }
    }

    fn all_commands(&mut self, on: bool) {
        self.bits = Bits([if on { u64::MAX } else { 0 }; BITS / 64]);
        self.allcommands = on;
        self.firstargs.clear();
    }

    /// Applies one selector rule.
    fn apply(&mut self, op: &[u8]) -> Result<(), RuleError> {
        let is = |w: &str| op.eq_ignore_ascii_case(w.as_bytes());
        if is("allkeys") || op == b"~*" {
            self.allkeys = true;
            self.keys.clear();
        } else if is("resetkeys") {
            self.allkeys = false;
            self.keys.clear();
        } else if is("allchannels") || op == b"&*" {
            self.allchannels = true;
            self.channels.clear();
        } else if is("resetchannels") {
            self.allchannels = false;
            self.channels.clear();
        } else if is("allcommands") || is("+@all") {
            self.all_commands(true);
        } else if is("nocommands") || is("-@all") {
            self.all_commands(false);
        } else if op[0] == b'~' || op[0] == b'%' {
            if self.allkeys {
                return Err(RuleError::KeyAfterAll);
            }
            let mut perms = 0;
            let mut at = 1;
            if op[0] == b'%' {
                loop {
                    match op.get(at).map(|b| b.to_ascii_uppercase()) {
                        Some(b'R') if perms & PERM_READ == 0 => perms |= PERM_READ,
                        Some(b'W') if perms & PERM_WRITE == 0 => perms |= PERM_WRITE,
                        Some(b'~') => {
                            at += 1;
                            break;
                        }
                        None => break,
                        _ => return Err(RuleError::Syntax),
                    }
                    at += 1;
                }
            } else {
                perms = PERM_ALL;
            }
            let pat = &op[at..];
            if has_spaces(pat) {
                return Err(RuleError::Syntax);
            }
            match self.keys.iter_mut().find(|(p, _)| p == pat) {
                Some((_, f)) => *f |= perms,
                None => self.keys.push((pat.to_vec(), perms)),
            }
            self.allkeys = false;
        } else if op[0] == b'&' {
            if self.allchannels {
                return Err(RuleError::ChannelAfterAll);
            }
            let pat = &op[1..];
            if has_spaces(pat) {
                return Err(RuleError::Syntax);
            }
            if !self.channels.iter().any(|c| c == pat) {
                self.channels.push(pat.to_vec());
            }
            self.allchannels = false;
        } else if (op[0] == b'+' || op[0] == b'-') && op.get(1) == Some(&b'@') {
            let cat = category(&op[2..]).ok_or(RuleError::Unknown)?;
            self.change_category(cat, op[0] == b'+');
        } else if op[0] == b'+' {
            let ix = index();
            let name = &op[1..];
            match name.iter().rposition(|&b| b == b'|') {
                None => {
                    let id = ix.find(name).ok_or(RuleError::Unknown)?;
                    self.change(id, true);
                }
                Some(bar) => {
                    let id = ix.find(&name[..bar]).ok_or(RuleError::Unknown)?;
                    if ix.cmds[id].parent.is_some() {
                        return Err(RuleError::SubcommandFirstArg);
                    }
                    let sub = &name[bar + 1..];
                    if sub.is_empty() {
                        return Err(RuleError::Syntax);
                    }
                    if !ix.cmds[id].subs.is_empty() {
                        let sid = ix.find(name).ok_or(RuleError::Unknown)?;
                        self.change(sid, true);
                    } else {
                        let slot = match self.firstargs.iter().position(|(c, _)| *c == id) {
                            Some(i) => i,
                            None => {
                                self.firstargs.push((id, Vec::new()));
                                self.firstargs.len() - 1
                            }
                        };
                        let list = &mut self.firstargs[slot].1;
                        if !list.iter().any(|a| a.eq_ignore_ascii_case(sub)) {
                            list.push(sub.to_vec());
                        }
                    }
                }
            }
        } else if op[0] == b'-' {
            let id = index().find(&op[1..]).ok_or(RuleError::Unknown)?;
            self.change(id, false);
        } else {
            return Err(RuleError::Syntax);
        }
        Ok(())
    }

    fn from_opset(op: &[u8], allchannels: bool) -> Result<Selector, RuleError> {
        let mut s = Selector::new(false, allchannels);
        let inner = &op[1..op.len() - 1];
        let (mut ranges, mut words) = (Vec::new(), Vec::new());
        if !crate::resp::split_args(inner, &mut ranges, &mut words) {
            return Err(RuleError::Syntax);
        }
        for r in ranges {
            let w = &words[r];
            if !w.is_empty() {
                s.apply(w)?;
            }
        }
        Ok(s)
    }

    fn key_ok(&self, key: &[u8], need: u8) -> bool {
        self.allkeys
            || self
                .keys
                .iter()
                .any(|(p, f)| f & need == need && glob::matches(p, key, false))
    }

    fn channel_ok(&self, channel: &[u8], is_pattern: bool) -> bool {
        self.allchannels || channel_in(&self.channels, channel, is_pattern)
    }

    /// Whether this selector lets the command run; on denial, the reason and the argument.
    fn check(
        &self,
        id: usize,
        spec: &CommandSpec,
        argv: &[&[u8]],
        keys: &[(usize, u8)],
    ) -> Verdict {
        if !self.allcommands && spec.flags & flag::NO_AUTH == 0 && !self.bits.get(id) {
            let idx = if index().cmds[id].parent.is_some() {
                2
            } else {
                1
            };
            let first_ok = argv.get(idx).is_some_and(|a| {
                self.firstargs
                    .iter()
                    .find(|(c, _)| *c == id)
                    .is_some_and(|(_, l)| l.iter().any(|x| x.eq_ignore_ascii_case(a)))
            });
            if !first_ok {
                return Verdict::Cmd;
            }
        }
        if !self.allkeys {
            for &(pos, need) in keys {
                if !self.key_ok(argv[pos], need) {
                    return Verdict::Key(pos);
                }
            }
        }
        if !self.allchannels {
            if let Some((from, to, is_pattern)) = channel_args(spec, argv.len()) {
                for (pos, ch) in argv.iter().enumerate().take(to).skip(from) {
                    if !self.channel_ok(ch, is_pattern) {
                        return Verdict::Channel(pos);
                    }
                }
            }
        }
        Verdict::Ok
    }
}

/// Channel names (or patterns, when subscribing by pattern) are checked against channel rules:
/// a name matches by glob, a pattern only literally.
fn channel_in(list: &[Vec<u8>], channel: &[u8], is_pattern: bool) -> bool {
    list.iter().any(|p| {
        if is_pattern {
            p == channel
        } else {
            glob::matches(p, channel, false)
        }
    })
}

/// The arguments that name channels a command publishes or subscribes to: `[from, to)` and
/// whether they are patterns.
fn channel_args(spec: &CommandSpec, argc: usize) -> Option<(usize, usize, bool)> {
    if spec.flags & flag::PUBSUB == 0 {
        return None;
    }
    match spec.name {
        "subscribe" | "ssubscribe" => Some((1, argc, false)),
        "psubscribe" => Some((1, argc, true)),
        "publish" | "spublish" => Some((1, argc.min(2), false)),
        _ => None,
    }
}

/// One selector's verdict, ordered as Redis ranks denials (command < key < channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Cmd,
    Key(usize),
    Channel(usize),
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Cmd,
    /// The argument index of the key.
    Key(usize),
    /// The argument index of the channel.
    Channel(usize),
}

impl Denied {
    /// The NOPERM error a client gets.
    pub fn error(self, fullname: &str) -> String {
        match self {
            Denied::Cmd => format!(
                "NOPERM this user has no permissions to run the '{fullname}' command"
            ),
            Denied::Key(_) => "NOPERM this user has no permissions to access one of the keys used as arguments".into(),
            Denied::Channel(_) => "NOPERM this user has no permissions to access one of the channels used as arguments".into(),
        }
    }

    /// The ACL LOG entry for this denial.
    pub fn entry(
        self,
        l: Lookup,
        argv: &[&[u8]],
        context: LogContext,
        username: &[u8],
        client_info: String,
        now_ms: u64,
    ) -> LogEntry {
        let object = match self {
            Denied::Cmd => l.full_name().into_bytes(),
            Denied::Key(p) | Denied::Channel(p) => {
                argv.get(p).map(|a| a.to_vec()).unwrap_or_default()
            }
        };
        LogEntry {
            count: 1,
            reason: self.log_reason(),
            context,
            object,
            username: username.to_vec(),
            ctime_ms: now_ms,
            client_info,
        }
    }

    /// How ACL LOG names the denial.
    pub fn log_reason(self) -> LogReason {
        match self {
            Denied::Cmd => LogReason::Command,
            Denied::Key(_) => LogReason::Key,
            Denied::Channel(_) => LogReason::Channel,
        }
    }

    /// The text inside scripts and at EXEC time (`getAclErrorMessage`).
    pub fn reason(self) -> &'static str {
        match self {
            Denied::Cmd => "can't run this command or subcommand",
            Denied::Key(_) => {
                "can't access at least one of the keys mentioned in the command arguments"
            }
            Denied::Channel(_) => "can't publish to the channel mentioned in the command",
        }
    }
}

/// Payload sanitizing flags (`sanitize-payload` / `skip-sanitize-payload`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sanitize {
    Unset,
    Skip,
    Always,
}

/// A user: flags, passwords and selectors (the root one first).
#[derive(Clone)]
pub struct User {
    pub name: Vec<u8>,
    /// Which incarnation: a user deleted and created again (or reloaded by ACL LOAD) is a new
    /// one, and connections of the old one are closed.
    pub uid: u64,
    pub enabled: bool,
    pub nopass: bool,
    sanitize: Sanitize,
    /// Hex SHA-256 hashes, in the order they were added.
    passwords: Vec<String>,
    selectors: Vec<Selector>,
}

/// The hex SHA-256 of a password, as ACL rules and lists show it.
pub fn hash_password(pass: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(pass);
    let mut s = String::with_capacity(64);
    for b in d {
        s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
        s.push(char::from_digit((b & 15) as u32, 16).unwrap_or('0'));
    }
    s
}

fn valid_hash(h: &[u8]) -> bool {
    h.len() == 64
        && h.iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// Compares without an early exit, so timing tells nothing about where hashes differ.
fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Whether a username is acceptable (no whitespace or NUL).
pub fn valid_username(name: &[u8]) -> bool {
    !has_spaces(name)
}

impl User {
    /// A new user: off, no passwords, no permissions; channels per `acl-pubsub-default`.
    pub fn new(name: &[u8], uid: u64, allchannels: bool) -> User {
        User {
            name: name.to_vec(),
            uid,
            enabled: false,
            nopass: false,
            sanitize: Sanitize::Unset,
            passwords: Vec::new(),
            selectors: vec![Selector::new(true, allchannels)],
        }
    }

    /// The default user as Redis creates it: on, nopass, everything allowed.
    pub fn default_user(uid: u64) -> User {
        let mut u = User::new(b"default", uid, false);
        for op in ["+@all", "~*", "&*", "on", "nopass"] {
            let _ = u.apply(op.as_bytes(), false);
        }
        u
    }

    /// Applies one rule (selectors `(…)` already merged into one argument). `allchannels` is
    /// the `acl-pubsub-default` for selectors the rule creates.
    pub fn apply(&mut self, op: &[u8], allchannels: bool) -> Result<(), RuleError> {
        if op.is_empty() {
            return Ok(());
        }
        let is = |w: &str| op.eq_ignore_ascii_case(w.as_bytes());
        if is("on") {
            self.enabled = true;
        } else if is("off") {
            self.enabled = false;
        } else if is("skip-sanitize-payload") {
            self.sanitize = Sanitize::Skip;
        } else if is("sanitize-payload") {
            self.sanitize = Sanitize::Always;
        } else if is("nopass") {
            self.nopass = true;
            self.passwords.clear();
        } else if is("resetpass") {
            self.nopass = false;
            self.passwords.clear();
        } else if op[0] == b'>' || op[0] == b'#' {
            let hash = if op[0] == b'>' {
                hash_password(&op[1..])
            } else {
                if !valid_hash(&op[1..]) {
                    return Err(RuleError::BadHash);
                }
                String::from_utf8_lossy(&op[1..]).into_owned()
            };
            if !self.passwords.contains(&hash) {
                self.passwords.push(hash);
            }
            self.nopass = false;
        } else if op[0] == b'<' || op[0] == b'!' {
            let hash = if op[0] == b'<' {
                hash_password(&op[1..])
            } else {
                if !valid_hash(&op[1..]) {
                    return Err(RuleError::BadHash);
                }
                String::from_utf8_lossy(&op[1..]).into_owned()
            };
            let at = self
                .passwords
                .iter()
                .position(|p| *p == hash)
                .ok_or(RuleError::NoSuchPassword)?;
            self.passwords.remove(at);
        } else if op[0] == b'(' && op[op.len() - 1] == b')' {
            let s = Selector::from_opset(op, allchannels)?;
            self.selectors.push(s);
        } else if is("clearselectors") {
            self.selectors.truncate(1);
        } else if is("reset") {
            self.passwords.clear();
            self.nopass = false;
            self.enabled = false;
            self.sanitize = Sanitize::Always;
            self.selectors.truncate(1);
            let root = &mut self.selectors[0];
            root.allkeys = false;
            root.keys.clear();
            root.allchannels = allchannels;
            root.channels.clear();
            root.all_commands(false);
        } else {
            self.selectors[0].apply(op)?;
        }
        Ok(())
    }

    /// Whether `pass` logs this user in (disabled users never log in).
    pub fn password_ok(&self, pass: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let h = hash_password(pass);
        self.passwords.iter().any(|p| same_hash(p, &h))
    }

    /// Whether every command, key and channel is allowed (the check can be skipped).
    pub fn unrestricted(&self) -> bool {
        self.selectors
            .iter()
            .any(|s| s.allcommands && s.allkeys && s.allchannels)
    }

    /// Whether the user may run `l` with these arguments.
    pub fn check(&self, l: Lookup, argv: &[&[u8]]) -> Result<(), Denied> {
        let Some(id) = index().id_of(l.spec) else {
            return Err(Denied::Cmd);
        };
        let mut keys: smallvec::SmallVec<[(usize, u8); 4]> = smallvec::SmallVec::new();
        if self.selectors.iter().any(|s| !s.allkeys) {
            keys_with_access(l.spec, argv, &mut keys);
        }
        let mut worst = Verdict::Cmd;
        for s in &self.selectors {
            let v = s.check(id, l.spec, argv, &keys);
            if v == Verdict::Ok {
                return Ok(());
            }
            let rank = |v: Verdict| match v {
                Verdict::Ok => (0, 0),
                Verdict::Cmd => (1, 0),
                Verdict::Key(p) => (2, p),
                Verdict::Channel(p) => (4, p),
            };
            if rank(v) > rank(worst) {
                worst = v;
            }
        }
        Err(match worst {
            Verdict::Key(p) => Denied::Key(p),
            Verdict::Channel(p) => Denied::Channel(p),
            _ => Denied::Cmd,
        })
    }

    /// Whether some selector both allows the command and may read every key (`allkeys`,
    /// `~*` or `%R~*`): what SORT's BY and GET patterns need, since they name keys no key
    /// spec shows (Redis's `ACLUserCheckCmdWithUnrestrictedKeyAccess`).
    pub fn may_read_any_key(&self, l: Lookup, argv: &[&[u8]]) -> bool {
        let Some(id) = index().id_of(l.spec) else {
            return false;
        };
        let mut keys: smallvec::SmallVec<[(usize, u8); 4]> = smallvec::SmallVec::new();
        keys_with_access(l.spec, argv, &mut keys);
        self.selectors.iter().any(|s| {
            s.check(id, l.spec, argv, &keys) == Verdict::Ok
                && (s.allkeys || s.keys.iter().any(|(p, f)| p == b"*" && f & PERM_READ != 0))
        })
    }

    /// Whether the user may use this channel (or, `is_pattern`, this exact pattern).
    pub fn channel_ok(&self, channel: &[u8], is_pattern: bool) -> bool {
        self.selectors
            .iter()
            .any(|s| s.channel_ok(channel, is_pattern))
    }

    /// Whether a change of this user from `old` may cut off subscriptions, so subscribed
    /// connections must be checked (Redis's `ACLKillPubsubClientsIfNeeded` shortcut).
    pub fn channels_narrowed(&self, old: &User) -> bool {
        if self.selectors.iter().any(|s| s.allchannels) {
            return false;
        }
        let upcoming: Vec<&Vec<u8>> = self.selectors.iter().flat_map(|s| &s.channels).collect();
        old.selectors.iter().any(|s| s.allchannels)
            || old
                .selectors
                .iter()
                .flat_map(|s| &s.channels)
                .any(|c| !upcoming.contains(&c))
    }

    /// Whether a subscription survives the user's current channel rules (all selectors'
    /// patterns pooled, as Redis does when it kills subscribers).
    pub fn subscription_ok(&self, channel: &[u8], is_pattern: bool) -> bool {
        if self.selectors.iter().any(|s| s.allchannels) {
            return true;
        }
        self.selectors
            .iter()
            .any(|s| channel_in(&s.channels, channel, is_pattern))
    }

    /// Whether RESTORE from this user skips deep payload checks (`skip-sanitize-payload`).
    pub fn skip_sanitize(&self) -> bool {
        self.sanitize == Sanitize::Skip
    }
}

/// The keys a command names and the access each needs (`PERM_READ`/`PERM_WRITE`), from its
/// key specs: ACCESS needs read, INSERT/DELETE/UPDATE need write.
pub fn keys_with_access(
    spec: &CommandSpec,
    argv: &[&[u8]],
    out: &mut smallvec::SmallVec<[(usize, u8); 4]>,
) {
    let access = |f: u32| {
        let mut a = 0;
        if f & kflag::ACCESS != 0 {
            a |= PERM_READ;
        }
        if f & (kflag::INSERT | kflag::DELETE | kflag::UPDATE) != 0 {
            a |= PERM_WRITE;
        }
        a
    };
    let mut pos = Vec::new();
    if spec.getkeys.is_some() || spec.keys.is_empty() {
        key_positions(spec, argv, &mut pos);
        let flags = match spec.key_flags {
            Some(f) => f(argv),
            None => spec.keys.iter().fold(0, |a, k| a | k.flags),
        };
        let need = if spec.keys.is_empty() {
            PERM_ALL
        } else {
            access(flags)
        };
        out.extend(pos.iter().map(|&p| (p, need)));
        return;
    }
    for ks in spec.keys {
        if ks.flags & kflag::NOT_KEY != 0 {
            continue;
        }
        let one = CommandSpec {
            keys: std::slice::from_ref(ks),
            getkeys: None,
            ..*spec
        };
        key_positions(&one, argv, &mut pos);
        let flags = spec.key_flags.map_or(ks.flags, |f| f(argv));
        let need = access(flags);
        out.extend(pos.iter().map(|&p| (p, need)));
    }
}

/// Who runs a script, for the checks of the commands it calls (`redis.call`): set on the shard
/// that runs it, only for users with restrictions.
pub struct Caller {
    pub user: std::sync::Arc<User>,
    /// The calling connection, as ACL LOG shows it.
    pub client_info: String,
    pub store: std::sync::Arc<Store>,
}

impl Caller {
    /// The check of a command a script calls; on denial, logged (context `lua`) and the error
    /// the script sees.
    pub fn check(&self, l: Lookup, argv: &[&[u8]], now_ms: u64) -> Result<(), String> {
        let Err(d) = self.user.check(l, argv) else {
            return Ok(());
        };
        self.store.log(d.entry(
            l,
            argv,
            LogContext::Lua,
            &self.user.name,
            self.client_info.clone(),
            now_ms,
        ));
        Err(format!("ERR The user executing the script {}", d.reason()))
    }
}

/// Splits selector arguments spread over several words (`(~x*`, `+get)`) back into one; on an
/// unmatched parenthesis, the index of the word that opened it.
pub fn merge_selector_args(args: &[&[u8]]) -> Result<Vec<Vec<u8>>, usize> {
    let mut out = Vec::new();
    let mut open: Option<(usize, Vec<u8>)> = None;
    for (i, a) in args.iter().enumerate() {
        if let Some((_, sel)) = open.as_mut() {
            sel.push(b' ');
            sel.extend_from_slice(a);
            if a.last() == Some(&b')') {
                if let Some((_, sel)) = open.take() {
                    out.push(sel);
                }
            }
            continue;
        }
        if a.first() == Some(&b'(') && a.last() != Some(&b')') {
            open = Some((i, a.to_vec()));
            continue;
        }
        out.push(a.to_vec());
    }
    match open {
        Some((i, _)) => Err(i),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests;
