//! Messages between shards. Requests and responses travel on two separate meshes (one shared
//! mesh can deadlock two shards that each wait to send to the other). A message carries the
//! work of one event-loop iteration for one destination: parts from many connections.

use shards::keyspace::{Entry, Key};
use shards::resp::Proto;

/// Messages a mesh link holds; a sender whose link is full keeps its batch and retries shortly
/// (back-pressure on the sending shard, never on the executing one, and nothing is dropped).
pub const MESH_CAPACITY: usize = 256;

/// Names a connection on its shard: slab index plus generation, so a reply for a connection
/// that has gone (and whose slot was reused) is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Token {
    pub index: u32,
    pub generation: u32,
}

/// A batch of work for one shard.
pub struct Request {
    /// The sending shard (for tracing; responses go back on the link it came in on).
    #[allow(dead_code)]
    pub from: usize,
    pub parts: Vec<ReqPart>,
}

/// One connection's work in a request batch.
pub struct ReqPart {
    pub conn: Token,
    /// The connection's operation sequence number, echoed back.
    pub seq: u32,
    pub db: u8,
    pub proto: Proto,
    /// The transaction the request runs in (0: none): a block run live holds whole shards,
    /// and its own requests pass its locks.
    pub tx: u64,
    pub body: ReqBody,
    /// Who runs the scripts in the request, when their calls need ACL checks.
    pub caller: Option<std::sync::Arc<shards::acl::Caller>>,
    /// The client's id (SLOWLOG names the client of a slow command).
    pub client: u64,
}

/// What a shard is asked to do.
pub enum ReqBody {
    /// Execute these RESP-encoded commands in order; answer with their replies, concatenated.
    Run(Vec<u8>),
    /// Like `Run`, for the per-shard parts of a command split over shards: executed without
    /// counting calls (the connection's shard counts the command once).
    Part(Vec<u8>),
    /// Copy out the entries of these keys (absent keys as None).
    Export(Vec<(u8, Key)>),
    /// Report statistics for INFO.
    /// Statistics for INFO (with the latency histograms when true).
    Stats(bool),
    /// Describe this shard's client connections (CLIENT LIST lines), optionally only some ids.
    ClientList(Option<Vec<u64>>, Option<String>),
    /// Close matching client connections; answer how many.
    ClientKill(crate::server_cmds::KillFilter),
    /// DEBUG SET-ACTIVE-EXPIRE.
    SetActiveExpire(bool),
    /// DEBUG DIGEST: a digest of this shard's data.
    Digest,
    /// DEBUG OBJECT: describe this key.
    DebugObject(u8, Key),
    /// Cluster mode: how many of these keys of database 0 are missing here (a slot in
    /// migration; see `crate::cluster::route`).
    ClusterMissing(Vec<Key>),
    /// Cluster mode: count (`limit` None) or list (at most `limit`) the keys of database 0 in
    /// `slot`, or (slot None) count them all.
    ClusterKeys {
        slot: Option<u16>,
        limit: Option<usize>,
    },
    /// PUBLISH / SPUBLISH: deliver to this shard's subscribers; answer how many.
    Publish {
        shard: bool,
        channel: Vec<u8>,
        message: Vec<u8>,
    },
    /// A PUBSUB question about this shard's subscriptions.
    Pubsub(crate::pubsub::PubsubQuery),
    /// SSUBSCRIBE / SUNSUBSCRIBE of the sending connection, to the owner of the channels' slots.
    ShardSub { channels: Vec<Vec<u8>>, add: bool },
    /// SPUBLISH's message, from the channel's owner, for these connections of this shard.
    ShardDeliver {
        conns: Vec<Token>,
        channel: Vec<u8>,
        message: Vec<u8>,
    },
    /// DEBUG POPULATE: create the keys `<prefix>:<i>` (i < count) of this shard that are absent.
    Populate {
        db: u8,
        count: u64,
        prefix: Vec<u8>,
        size: Option<usize>,
    },
    /// CONFIG RESETSTAT.
    ResetStat,
    /// A broadcasting tracking client follows these key prefixes (`add`), or none any more.
    Follow {
        who: u64,
        prefixes: Vec<Vec<u8>>,
        add: bool,
    },
    /// Invalidations for this shard's tracking connections (no answer; see `crate::tracking`).
    Tracking(Vec<crate::tracking::Note>),
    /// WAIT: hand what this shard logged to the replication hub, then mark the point.
    ReplMark(u64),
    /// REPLICAOF NO ONE: log writes for the replication hub from now on.
    ReplPromote,
    /// A MONITOR line for this shard's monitors (no answer).
    Monitor(String),
    /// CLIENT UNPAUSE: held connections go on (no answer).
    Unpause,
    /// SLOWLOG on this shard: the newest `Some(count)` entries, or (None) reset.
    Slowlog(Option<usize>),
    /// LATENCY on this shard: `Some(events)` resets those events (all if empty); None asks
    /// for the histograms and event series.
    Latency(Option<Vec<Vec<u8>>>),
    /// Drop (or answer) the waiter of this connection, blocked on the receiving shard.
    Unblock(crate::block::Unblock),
    /// CLIENT UNBLOCK: unblock the connection with this id if it lives here.
    ClientUnblock { id: u64, error: bool },
    /// Stop watching keys for the connection (see [`crate::block`]).
    Unwatch,
    /// WATCH: count these keys as watched and report their versions.
    WatchKeys(Vec<(u8, Key)>),
    /// UNWATCH (or the end of a block): these keys are watched once less.
    UnwatchKeys(Vec<(u8, Key)>),
    /// A step of a transaction: lock these keys (waiting until all are free), run `op` under
    /// the locks, then release every lock of `tx` here if `release` (see [`crate::txn`]).
    Tx {
        tx: crate::txn::TxId,
        lock: Vec<(u8, Key)>,
        /// Lock the whole shard (every key, and whole-keyspace commands) instead.
        exclusive: bool,
        op: crate::txn::TxOp,
        release: bool,
    },
}

/// A batch of answers, one part per request part, in request order.
pub struct Response {
    pub from: usize,
    pub parts: Vec<RepPart>,
}

pub struct RepPart {
    pub conn: Token,
    pub seq: u32,
    pub body: RepBody,
}

pub enum RepBody {
    /// Encoded replies.
    Bytes(Vec<u8>),
    /// Replies of a run whose last command blocked: its answer follows later.
    Partial(Vec<u8>),
    Entries(Vec<(u8, Key, Option<Entry>)>),
    Stats(Box<ShardStats>),
    Lines(String),
    Count(i64),
    Digest([u8; 20]),
    Ack,
    /// A key the connection watches was written.
    Wake,
    /// No answer yet: the request waits for locked keys and is answered when it has run.
    Deferred,
    /// The versions WATCH asked for.
    Watched(Vec<crate::multi::Watched>),
    /// A watched key changed: the EXEC fails.
    Conflict,
    /// The operation failed on this shard.
    Error(String),
    /// Names (PUBSUB CHANNELS, the patterns for NUMPAT).
    Names(Vec<Vec<u8>>),
    /// Counts (PUBSUB NUMSUB).
    Counts(Vec<i64>),
    /// A shard's newest SLOWLOG entries and its log's length.
    Slow(Vec<shards::slowlog::Entry>, usize),
    /// A shard's command histograms and latency event series.
    Latency(LatencyData),
    /// A forwarded run stopped at a script that must run as a transaction over `keys` (see
    /// `shards::script`): `out` answers the commands before it, `rest` is the script's frame
    /// and what followed it, for the connection to run again.
    Reroute {
        out: Vec<u8>,
        rest: Vec<u8>,
        keys: Vec<(u8, Key)>,
    },
}

impl RepBody {
    /// The sum of the counts among shards' answers (others count 0).
    pub fn count_sum(results: &[(usize, RepBody)]) -> i64 {
        results
            .iter()
            .map(|(_, b)| if let RepBody::Count(n) = b { *n } else { 0 })
            .sum()
    }
}

/// What INFO needs from a shard.
#[derive(Default, Clone)]
/// A shard's latency data (see `shards::latency`).
pub struct LatencyData {
    pub hists: Vec<(String, shards::latency::Histogram<u64>)>,
    pub events: Vec<(String, shards::latency::Series)>,
}

pub struct ShardStats {
    pub keys: Vec<(usize, usize, u64)>,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub expired_keys: u64,
    /// Keys evicted; µs spent over `maxmemory` in all, and in the current stretch over it.
    pub evicted_keys: u64,
    pub eviction_exceeded_us: u64,
    pub eviction_current_us: u64,
    pub commands: u64,
    pub cmd: Vec<(String, shards::shard::CmdStat)>,
    pub connected_clients: usize,
    /// Clients waiting in a blocking command (parked or watching).
    pub blocked_clients: usize,
    pub connections_received: u64,
    pub net_input_bytes: u64,
    pub net_output_bytes: u64,
    pub rejected_connections: u64,
    pub errorstats: Vec<(String, u64)>,
    pub hops_out: u64,
    /// Bytes this shard's thread holds (allocated and not yet freed by it), and its Lua
    /// state's bytes.
    pub memory: u64,
    pub lua_memory: u64,
    /// Bytes this shard's client connections hold (their buffers and state, as CLIENT
    /// LIST's tot-mem counts them).
    pub clients_memory: u64,
    /// The AOF, if on: current size (base and incremental files), base size, bytes not yet
    /// written, whether the last write succeeded.
    pub aof: Option<(u64, u64, u64, bool)>,
    /// Instantaneous commands, input bytes and output bytes per second.
    pub rates: (f64, f64, f64),
    /// This shard's subscribed channels, patterns and shard channels.
    pub pubsub: crate::pubsub::SubNames,
    /// Tracking: this shard's connections with it on, and its table's keys, items, prefixes.
    pub tracking: (usize, usize, usize, usize),
    /// Command histograms, when INFO asked for latencystats.
    pub latency: Vec<(String, shards::latency::Histogram<u64>)>,
}
