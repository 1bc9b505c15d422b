//! The shape of a command declaration. Every command is declared once, as a [`CommandSpec`]
//! constant beside its code; the registry (`cmd::registry`) lists them all, and everything else —
//! arity errors, key extraction and routing, COMMAND INFO/DOCS/LIST/GETKEYS, ACL categories —
//! reads that one declaration.

use super::Call;
use crate::{Result, Shard};

/// Runs a command against one shard, writing its reply into `call.out`. On `Err` nothing has
/// been written.
pub type RunFn = fn(&mut Shard, &mut Call<'_>) -> Result<()>;

/// Finds the key positions of one call, for commands key specs cannot describe.
pub type GetKeysFn = fn(&[&[u8]], &mut Vec<usize>);

/// Computes the key flags of one call, for key specs with `variable_flags`.
pub type KeyFlagsFn = fn(&[&[u8]]) -> u32;

/// Command flags, in the order COMMAND INFO lists them.
pub mod flag {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const PUBSUB: u32 = 1 << 4;
    pub const NOSCRIPT: u32 = 1 << 5;
    pub const BLOCKING: u32 = 1 << 6;
    pub const LOADING: u32 = 1 << 7;
    pub const STALE: u32 = 1 << 8;
    pub const SKIP_MONITOR: u32 = 1 << 9;
    pub const SKIP_SLOWLOG: u32 = 1 << 10;
    pub const ASKING: u32 = 1 << 11;
    pub const FAST: u32 = 1 << 12;
    pub const NO_AUTH: u32 = 1 << 13;
    pub const NO_MANDATORY_KEYS: u32 = 1 << 14;
    pub const NO_ASYNC_LOADING: u32 = 1 << 15;
    pub const NO_MULTI: u32 = 1 << 16;
    pub const MOVABLE_KEYS: u32 = 1 << 17;
    pub const ALLOW_BUSY: u32 = 1 << 18;
    /// Hidden from COMMAND INFO, as in Redis.
    pub const MAY_REPLICATE: u32 = 1 << 19;
    pub const PROTECTED: u32 = 1 << 20;
    pub const SENTINEL: u32 = 1 << 21;
    pub const ONLY_SENTINEL: u32 = 1 << 22;

    /// Names COMMAND INFO shows, in order (hidden flags have none).
    pub const NAMES: &[(u32, &str)] = &[
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (ADMIN, "admin"),
        (PUBSUB, "pubsub"),
        (NOSCRIPT, "noscript"),
        (BLOCKING, "blocking"),
        (LOADING, "loading"),
        (STALE, "stale"),
        (SKIP_MONITOR, "skip_monitor"),
        (SKIP_SLOWLOG, "skip_slowlog"),
        (ASKING, "asking"),
        (FAST, "fast"),
        (NO_AUTH, "no_auth"),
        (NO_MANDATORY_KEYS, "no_mandatory_keys"),
        (NO_ASYNC_LOADING, "no_async_loading"),
        (NO_MULTI, "no_multi"),
        (MOVABLE_KEYS, "movablekeys"),
        (ALLOW_BUSY, "allow_busy"),
    ];
}

/// ACL categories, in the order Redis lists them. Declarations name only the categories that
/// do not follow from flags: @read, @write, @admin, @dangerous (from admin), @pubsub, @fast,
/// @slow and @blocking are derived.
pub mod acl {
    pub const KEYSPACE: u32 = 1 << 0;
    pub const READ: u32 = 1 << 1;
    pub const WRITE: u32 = 1 << 2;
    pub const SET: u32 = 1 << 3;
    pub const SORTEDSET: u32 = 1 << 4;
    pub const LIST: u32 = 1 << 5;
    pub const HASH: u32 = 1 << 6;
    pub const STRING: u32 = 1 << 7;
    pub const BITMAP: u32 = 1 << 8;
    pub const HYPERLOGLOG: u32 = 1 << 9;
    pub const GEO: u32 = 1 << 10;
    pub const STREAM: u32 = 1 << 11;
    pub const PUBSUB: u32 = 1 << 12;
    pub const ADMIN: u32 = 1 << 13;
    pub const FAST: u32 = 1 << 14;
    pub const SLOW: u32 = 1 << 15;
    pub const BLOCKING: u32 = 1 << 16;
    pub const DANGEROUS: u32 = 1 << 17;
    pub const CONNECTION: u32 = 1 << 18;
    pub const TRANSACTION: u32 = 1 << 19;
    pub const SCRIPTING: u32 = 1 << 20;
    /// RediSearch's category for the FT.* commands.
    pub const SEARCH: u32 = 1 << 21;

    pub const NAMES: &[(u32, &str)] = &[
        (KEYSPACE, "keyspace"),
        (READ, "read"),
        (WRITE, "write"),
        (SET, "set"),
        (SORTEDSET, "sortedset"),
        (LIST, "list"),
        (HASH, "hash"),
        (STRING, "string"),
        (BITMAP, "bitmap"),
        (HYPERLOGLOG, "hyperloglog"),
        (GEO, "geo"),
        (STREAM, "stream"),
        (PUBSUB, "pubsub"),
        (ADMIN, "admin"),
        (FAST, "fast"),
        (SLOW, "slow"),
        (BLOCKING, "blocking"),
        (DANGEROUS, "dangerous"),
        (CONNECTION, "connection"),
        (TRANSACTION, "transaction"),
        (SCRIPTING, "scripting"),
        (SEARCH, "search"),
    ];
}

/// Key spec flags, in the order COMMAND INFO lists them.
pub mod kflag {
    pub const RO: u32 = 1 << 0;
    pub const RW: u32 = 1 << 1;
    pub const OW: u32 = 1 << 2;
    pub const RM: u32 = 1 << 3;
    pub const ACCESS: u32 = 1 << 4;
    pub const UPDATE: u32 = 1 << 5;
    pub const INSERT: u32 = 1 << 6;
    pub const DELETE: u32 = 1 << 7;
    pub const NOT_KEY: u32 = 1 << 8;
    pub const INCOMPLETE: u32 = 1 << 9;
    pub const VARIABLE_FLAGS: u32 = 1 << 10;

    pub const NAMES: &[(u32, &str)] = &[
        (RO, "RO"),
        (RW, "RW"),
        (OW, "OW"),
        (RM, "RM"),
        (ACCESS, "access"),
        (UPDATE, "update"),
        (INSERT, "insert"),
        (DELETE, "delete"),
        (NOT_KEY, "not_key"),
        (INCOMPLETE, "incomplete"),
        (VARIABLE_FLAGS, "variable_flags"),
    ];
}

/// Where the search for a key spec's keys begins.
#[derive(Debug, Clone, Copy)]
pub enum BeginSearch {
    /// At a fixed argument index.
    Index(i32),
    /// After the first (or, with negative `startfrom`, last) occurrence of a keyword.
    Keyword {
        keyword: &'static str,
        startfrom: i32,
    },
    /// Key names the specs cannot locate (SORT's BY/GET patterns, its STORE anywhere).
    Unknown,
}

/// How the keys are found from where the search began.
#[derive(Debug, Clone, Copy)]
pub enum FindKeys {
    /// `lastkey` relative to the first key (negative: from the end), every `step`-th argument,
    /// `limit` (if >0) divides the remaining count.
    Range { lastkey: i32, step: i32, limit: i32 },
    /// The argument at `keynumidx` holds the key count; keys start `firstkey` later.
    Keynum {
        keynumidx: i32,
        firstkey: i32,
        step: i32,
    },
    /// See [`BeginSearch::Unknown`].
    Unknown,
}

/// Redis's key specification.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// A remark COMMAND INFO shows (e.g. why the flags are what they are).
    pub notes: Option<&'static str>,
    pub flags: u32,
    pub begin: BeginSearch,
    pub find: FindKeys,
}

impl KeySpec {
    /// A key spec for keys that only the command's own `getkeys` can find.
    pub const fn unknown(flags: u32, notes: &'static str) -> KeySpec {
        KeySpec {
            notes: Some(notes),
            flags,
            begin: BeginSearch::Unknown,
            find: FindKeys::Unknown,
        }
    }

    /// One key at `index`.
    pub const fn one(index: i32, flags: u32) -> KeySpec {
        KeySpec {
            notes: None,
            flags,
            begin: BeginSearch::Index(index),
            find: FindKeys::Range {
                lastkey: 0,
                step: 1,
                limit: 0,
            },
        }
    }

    /// Keys from `index` to `lastkey` (relative; -1 = the last argument), every `step`.
    pub const fn range(index: i32, lastkey: i32, step: i32, flags: u32) -> KeySpec {
        KeySpec {
            notes: None,
            flags,
            begin: BeginSearch::Index(index),
            find: FindKeys::Range {
                lastkey,
                step,
                limit: 0,
            },
        }
    }
}

/// COMMAND DOCS argument types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    String,
    Integer,
    Double,
    Key,
    Pattern,
    UnixTime,
    PureToken,
    OneOf,
    Block,
}

impl ArgType {
    pub fn name(self) -> &'static str {
        match self {
            ArgType::String => "string",
            ArgType::Integer => "integer",
            ArgType::Double => "double",
            ArgType::Key => "key",
            ArgType::Pattern => "pattern",
            ArgType::UnixTime => "unix-time",
            ArgType::PureToken => "pure-token",
            ArgType::OneOf => "oneof",
            ArgType::Block => "block",
        }
    }
}

/// Argument doc flags.
pub mod aflag {
    pub const OPTIONAL: u8 = 1;
    pub const MULTIPLE: u8 = 2;
    pub const MULTIPLE_TOKEN: u8 = 4;
}

/// One argument in COMMAND DOCS.
#[derive(Debug, Clone, Copy)]
pub struct Arg {
    pub name: &'static str,
    pub kind: ArgType,
    /// For keys: which key spec the key belongs to.
    pub key_spec_index: i32,
    pub token: Option<&'static str>,
    pub since: Option<&'static str>,
    pub flags: u8,
    pub args: &'static [Arg],
}

impl Arg {
    pub const fn new(name: &'static str, kind: ArgType) -> Arg {
        Arg {
            name,
            kind,
            key_spec_index: -1,
            token: None,
            since: None,
            flags: 0,
            args: &[],
        }
    }
    pub const fn key(name: &'static str, spec: i32) -> Arg {
        Arg {
            name,
            kind: ArgType::Key,
            key_spec_index: spec,
            token: None,
            since: None,
            flags: 0,
            args: &[],
        }
    }
    pub const fn token(name: &'static str, token: &'static str) -> Arg {
        Arg {
            name,
            kind: ArgType::PureToken,
            key_spec_index: -1,
            token: Some(token),
            since: None,
            flags: 0,
            args: &[],
        }
    }
    pub const fn with_token(mut self, token: &'static str) -> Arg {
        self.token = Some(token);
        self
    }
    pub const fn optional(mut self) -> Arg {
        self.flags |= aflag::OPTIONAL;
        self
    }
    pub const fn multiple(mut self) -> Arg {
        self.flags |= aflag::MULTIPLE;
        self
    }
    pub const fn multiple_token(mut self) -> Arg {
        self.flags |= aflag::MULTIPLE_TOKEN;
        self
    }
    pub const fn since(mut self, v: &'static str) -> Arg {
        self.since = Some(v);
        self
    }
    pub const fn oneof(name: &'static str, args: &'static [Arg]) -> Arg {
        Arg {
            name,
            kind: ArgType::OneOf,
            key_spec_index: -1,
            token: None,
            since: None,
            flags: 0,
            args,
        }
    }
    pub const fn block(name: &'static str, args: &'static [Arg]) -> Arg {
        Arg {
            name,
            kind: ArgType::Block,
            key_spec_index: -1,
            token: None,
            since: None,
            flags: 0,
            args,
        }
    }
}

/// The command group COMMAND DOCS reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Generic,
    String,
    List,
    Set,
    SortedSet,
    Hash,
    PubSub,
    Transactions,
    Connection,
    Server,
    Scripting,
    HyperLogLog,
    Cluster,
    Sentinel,
    Geo,
    Stream,
    Bitmap,
    Search,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Generic => "generic",
            Group::String => "string",
            Group::List => "list",
            Group::Set => "set",
            Group::SortedSet => "sorted-set",
            Group::Hash => "hash",
            Group::PubSub => "pubsub",
            Group::Transactions => "transactions",
            Group::Connection => "connection",
            Group::Server => "server",
            Group::Scripting => "scripting",
            Group::HyperLogLog => "hyperloglog",
            Group::Cluster => "cluster",
            Group::Sentinel => "sentinel",
            Group::Geo => "geo",
            Group::Stream => "stream",
            Group::Bitmap => "bitmap",
            Group::Search => "search",
        }
    }
}

/// How replies of a command split over shards are merged into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Integers are added (DEL, EXISTS, TOUCH, UNLINK, DBSIZE).
    Sum,
    /// Array elements are put back in key order (MGET).
    KeyOrder,
    /// Arrays are concatenated (KEYS).
    Concat,
    /// Every part answers `+OK` (or the same error); the first reply is the reply (MSET, FLUSHALL).
    First,
    /// One non-null reply, if any (RANDOMKEY).
    AnyNonNull,
    /// Each shard answers a part of FT.SEARCH / FT.AGGREGATE / FT.INFO, and
    /// `cmd::search::merge_parts` makes the reply (a command run whole on one shard renders
    /// its own reply).
    Search,
}

/// Where a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// On the shard owning its keys; with no keys, on the connection's own shard. When keys
    /// span shards, `split` says how.
    Keys(Split),
    /// On every shard, replies merged.
    AllShards(Merge),
    /// On the shard that a SCAN cursor names.
    ScanCursor,
    /// By the server itself: connection state or process-wide work (see [`ConnCmd`]).
    Server(ConnCmd),
}

/// How a command whose keys live on several shards is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// It cannot span shards (one key, or no keys).
    Never,
    /// Each shard runs the command on its own keys (each key with `step - 1` following
    /// arguments); replies merge.
    PerKey(Merge),
    /// The keys' entries are copied to the coordinator, the command runs there against the
    /// copies, and the changed entries go back to their owners.
    Gather,
}

/// Commands the server layer carries out itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnCmd {
    Select,
    Hello,
    Quit,
    Reset,
    Auth,
    Client,
    Info,
    Config,
    Command,
    Shutdown,
    Debug,
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    /// SAVE, BGSAVE, LASTSAVE, BGREWRITEAOF.
    Persist,
    /// (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PUBLISH, SPUBLISH, PUBSUB.
    PubSub,
    /// ACL and its subcommands.
    Acl,
    /// SLOWLOG and its subcommands.
    Slowlog,
    /// LATENCY and its subcommands.
    Latency,
    /// MONITOR.
    Monitor,
    /// MEMORY STATS / DOCTOR / MALLOC-STATS / PURGE.
    Memory,
    /// PSYNC, SYNC, REPLCONF, ROLE, REPLICAOF, SLAVEOF, WAIT.
    Repl,
    /// CLUSTER and its subcommands, ASKING, READONLY, READWRITE.
    Cluster,
    /// MIGRATE.
    Migrate,
}

/// A command's one declaration.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// Lower-case name (for a subcommand: the subcommand's name only).
    pub name: &'static str,
    /// Redis arity: N means exactly N arguments (with the name), -N means at least N.
    pub arity: i32,
    pub flags: u32,
    /// ACL categories beyond those derived from flags.
    pub acl: u32,
    pub group: Group,
    pub keys: &'static [KeySpec],
    /// Key extraction for commands that key specs cannot describe exactly.
    pub getkeys: Option<GetKeysFn>,
    /// The key flags of one call, for commands whose key spec has `variable_flags`.
    pub key_flags: Option<KeyFlagsFn>,
    pub route: Route,
    /// Run on a shard. Commands routed to the server layer have none.
    pub run: Option<RunFn>,
    pub summary: &'static str,
    pub since: &'static str,
    pub complexity: &'static str,
    /// Request/response policy tips, as COMMAND INFO shows them.
    pub tips: &'static [&'static str],
    pub args: &'static [Arg],
    /// Version history lines for COMMAND DOCS: (version, what changed).
    pub history: &'static [(&'static str, &'static str)],
    /// For deprecated commands: the version that deprecated it and what replaces it.
    pub deprecated: Option<(&'static str, &'static str)>,
    /// COMMAND DOCS `doc_flags` includes `syscmd`.
    pub syscmd: bool,
    pub subcommands: &'static [CommandSpec],
}

impl CommandSpec {
    /// A declaration with defaults for the optional parts; fill the rest with struct update.
    pub const DEFAULT: CommandSpec = CommandSpec {
        name: "",
        arity: 0,
        flags: 0,
        acl: 0,
        group: Group::Generic,
        keys: &[],
        getkeys: None,
        key_flags: None,
        route: Route::Keys(Split::Never),
        run: None,
        summary: "",
        since: "1.0.0",
        complexity: "O(1)",
        tips: &[],
        args: &[],
        history: &[],
        deprecated: None,
        syscmd: false,
        subcommands: &[],
    };

    /// Every ACL category of the command: declared plus derived from flags (as Redis's
    /// `setImplicitACLCategories`).
    pub fn acl_categories(&self) -> u32 {
        let mut c = self.acl;
        if self.flags & flag::WRITE != 0 {
            c |= acl::WRITE;
        }
        if self.flags & flag::READONLY != 0 && c & acl::SCRIPTING == 0 {
            c |= acl::READ;
        }
        if self.flags & flag::ADMIN != 0 {
            c |= acl::ADMIN | acl::DANGEROUS;
        }
        if self.flags & flag::PUBSUB != 0 {
            c |= acl::PUBSUB;
        }
        if self.flags & flag::FAST != 0 {
            c |= acl::FAST;
        }
        if self.flags & flag::BLOCKING != 0 {
            c |= acl::BLOCKING;
        }
        if c & acl::FAST == 0 {
            c |= acl::SLOW;
        }
        c
    }

    /// Whether the argument count `argc` (name included) fits the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let a = self.arity;
        (a > 0 && argc as i32 == a) || (a < 0 && argc as i32 >= -a)
    }

    /// Whether key positions depend on the arguments (COMMAND INFO's `movablekeys`).
    pub fn movable_keys(&self) -> bool {
        self.getkeys.is_some()
            || self.keys.iter().any(|k| {
                matches!(k.begin, BeginSearch::Keyword { .. })
                    || matches!(k.find, FindKeys::Keynum { .. })
            })
    }
}
