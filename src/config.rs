//! Configuration: one table of options with redis.conf names, read from an optional config file
//! (redis.conf syntax) and then from `--option value` arguments, as redis-server does. CONFIG
//! GET/SET see the same table. Shards read hot values through [`Config::generation`]-checked
//! caches, so CONFIG SET reaches every core without a lock on the request path.

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

/// What values an option takes.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Int {
        min: i64,
        max: i64,
    },
    /// A byte count, accepting `k`, `kb`, `m`, `mb`, `g`, `gb` suffixes, at least `min`.
    Memory {
        min: u64,
    },
    Bool,
    Str,
    Enum(&'static [&'static str]),
}

/// One option's declaration.
pub struct OptDef {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: Kind,
    /// CONFIG SET may change it at run time.
    pub mutable: bool,
    pub help: &'static str,
}

const fn opt(
    name: &'static str,
    default: &'static str,
    kind: Kind,
    mutable: bool,
    help: &'static str,
) -> OptDef {
    OptDef {
        name,
        default,
        kind,
        mutable,
        help,
    }
}

/// Every option shardis knows.
pub const OPTIONS: &[OptDef] = &[
    opt(
        "bind",
        "127.0.0.1",
        Kind::Str,
        false,
        "address to listen on",
    ),
    opt(
        "port",
        "6379",
        Kind::Int { min: 0, max: 65535 },
        false,
        "TCP port (0: the kernel picks one; the log says which)",
    ),
    opt(
        "shards",
        "0",
        Kind::Int { min: 0, max: 1024 },
        false,
        "number of shards, one per core (0: every usable core)",
    ),
    opt(
        "io-memory",
        "1mb",
        Kind::Memory { min: 0 },
        false,
        "io_uring buffer memory per shard (locked; see ulimit -l)",
    ),
    opt(
        "databases",
        "16",
        Kind::Int { min: 16, max: 16 },
        false,
        "number of logical databases (16)",
    ),
    opt(
        "save",
        "3600 1 300 100 60 10000",
        Kind::Str,
        true,
        "snapshot points: pairs of <seconds> <changes> (empty: none)",
    ),
    opt(
        "appendonly",
        "no",
        Kind::Bool,
        true,
        "log every write to a per-shard append-only file",
    ),
    opt(
        "appendfsync",
        "everysec",
        Kind::Enum(&["always", "everysec", "no"]),
        true,
        "AOF fsync policy",
    ),
    opt("dir", ".", Kind::Str, true, "directory for data files"),
    opt("dbfilename", "dump.rdb", Kind::Str, true, "RDB file name"),
    opt(
        "appendfilename",
        "appendonly.aof",
        Kind::Str,
        false,
        "AOF base name",
    ),
    opt(
        "notify-keyspace-events",
        "",
        Kind::Str,
        true,
        "keyspace notification classes (K, E, g, $, l, s, h, z, x, e, t, m, d, n, A)",
    ),
    opt(
        "client-output-buffer-limit",
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
        Kind::Str,
        true,
        "output limits per client class: <class> <hard> <soft> <soft seconds> (pubsub is enforced)",
    ),
    opt(
        "export-rdb",
        "",
        Kind::Str,
        false,
        "load the data, write it all to this one Redis-loadable RDB file, and exit",
    ),
    opt(
        "appenddirname",
        "appendonlydir",
        Kind::Str,
        false,
        "directory (under dir) of the per-shard AOF directories",
    ),
    opt(
        "aof-load-truncated",
        "yes",
        Kind::Bool,
        true,
        "load an AOF whose tail is torn, truncating it (no: refuse to start)",
    ),
    opt(
        "auto-aof-rewrite-percentage",
        "100",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        true,
        "rewrite the AOF when it grew this much since the last rewrite (0: never)",
    ),
    opt(
        "auto-aof-rewrite-min-size",
        "64mb",
        Kind::Memory { min: 0 },
        true,
        "no automatic AOF rewrite below this size",
    ),
    opt(
        "rdbcompression",
        "yes",
        Kind::Bool,
        true,
        "compress strings in RDB files (always on)",
    ),
    opt(
        "rdbchecksum",
        "yes",
        Kind::Bool,
        true,
        "end RDB files with a CRC64 (always written)",
    ),
    opt(
        "enable-protected-configs",
        "no",
        Kind::Enum(&["no", "yes", "local"]),
        false,
        "allow CONFIG SET of dir and dbfilename (yes, no, or local connections only)",
    ),
    opt(
        "enable-debug-command",
        "no",
        Kind::Enum(&["no", "yes", "local"]),
        false,
        "allow DEBUG (yes, no, or local connections only)",
    ),
    opt(
        "proto-max-bulk-len",
        "512mb",
        Kind::Memory { min: 1024 * 1024 },
        true,
        "largest bulk string a client may send",
    ),
    opt(
        "client-query-buffer-limit",
        "1gb",
        Kind::Memory { min: 1024 * 1024 },
        true,
        "largest query buffer per client",
    ),
    opt(
        "maxclients",
        "10000",
        Kind::Int {
            min: 1,
            max: u32::MAX as i64,
        },
        true,
        "most simultaneous clients",
    ),
    opt(
        "timeout",
        "0",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        true,
        "close idle clients after this many seconds (0: never)",
    ),
    opt(
        "tcp-keepalive",
        "300",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        true,
        "TCP keepalive seconds",
    ),
    opt(
        "tcp-backlog",
        "511",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        false,
        "listen backlog",
    ),
    opt(
        "hz",
        "10",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        true,
        "background task frequency (active expiry)",
    ),
    opt(
        "slowlog-log-slower-than",
        "10000",
        Kind::Int {
            min: -1,
            max: i64::MAX,
        },
        true,
        "microseconds a command must take to enter SLOWLOG (-1: never, 0: always)",
    ),
    opt(
        "slowlog-max-len",
        "128",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        true,
        "entries SLOWLOG keeps",
    ),
    opt(
        "latency-monitor-threshold",
        "0",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        true,
        "milliseconds a command must take to be a latency event (0: monitor off)",
    ),
    opt(
        "latency-tracking",
        "yes",
        Kind::Bool,
        true,
        "per-command latency histograms (INFO latencystats, LATENCY HISTOGRAM)",
    ),
    opt(
        "latency-tracking-info-percentiles",
        "50 99 99.9",
        Kind::Str,
        true,
        "percentiles INFO latencystats reports",
    ),
    opt(
        "tracking-table-max-keys",
        "1000000",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        true,
        "keys client-side caching remembers (split over the shards; 0: no limit)",
    ),
    opt(
        "metrics-port",
        "0",
        Kind::Int {
            min: 0,
            max: 65535,
        },
        false,
        "Prometheus endpoint (GET /metrics) on this port; 0 = off",
    ),
    opt(
        "sanitize-dump-payload",
        "no",
        Kind::Enum(&["no", "yes", "clients"]),
        true,
        "accepted: RESTORE and RDB loading always check a payload's whole structure",
    ),
    opt(
        "aclfile",
        "",
        Kind::Str,
        false,
        "file of ACL users (ACL LOAD / ACL SAVE)",
    ),
    opt(
        "acllog-max-len",
        "128",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        true,
        "entries kept in ACL LOG",
    ),
    opt(
        "acl-pubsub-default",
        "resetchannels",
        Kind::Enum(&["allchannels", "resetchannels"]),
        true,
        "channel permissions of new ACL users",
    ),
    opt(
        "replicaof",
        "",
        Kind::Str,
        false,
        "`<host> <port>` of a master to replicate from at start-up (REPLICAOF at run time)",
    ),
    opt(
        "masterauth",
        "",
        Kind::Str,
        true,
        "password a replica sends its master (AUTH)",
    ),
    opt(
        "masteruser",
        "",
        Kind::Str,
        true,
        "user a replica authenticates as with its master (with masterauth)",
    ),
    opt(
        "replica-serve-stale-data",
        "yes",
        Kind::Bool,
        true,
        "a replica whose link is down still answers (no: -MASTERDOWN)",
    ),
    opt(
        "repl-backlog-size",
        "1mb",
        Kind::Memory { min: 16 * 1024 },
        true,
        "the replication backlog (what a reconnecting replica can resume from)",
    ),
    opt(
        "repl-ping-replica-period",
        "10",
        Kind::Int {
            min: 1,
            max: i64::MAX,
        },
        true,
        "seconds between the PINGs a master sends its replicas",
    ),
    opt(
        "repl-timeout",
        "60",
        Kind::Int {
            min: 1,
            max: i64::MAX,
        },
        true,
        "seconds of silence after which a replication link is dropped",
    ),
    opt(
        "repl-diskless-sync",
        "yes",
        Kind::Bool,
        true,
        "yes: the payload streams as it is made (EOF-marked); no: it is made whole first and sent length-prefixed",
    ),
    opt(
        "repl-diskless-sync-delay",
        "5",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        true,
        "seconds the first replica asking for a full resync waits for others to share its payload",
    ),
    opt(
        "repl-diskless-sync-max-replicas",
        "0",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        true,
        "with this many replicas gathered, a full resync starts before repl-diskless-sync-delay ends (0: no limit)",
    ),
    opt(
        "repl-diskless-load",
        "disabled",
        Kind::Enum(&["disabled", "on-empty-db", "swapdb"]),
        true,
        "accepted; a shardis replica receives the whole payload in memory, then loads it",
    ),
    opt(
        "replica-lazy-flush",
        "no",
        Kind::Bool,
        true,
        "accepted; a replica empties its databases before loading a payload either way",
    ),
    opt(
        "min-replicas-to-write",
        "0",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        true,
        "writes are refused (-NOREPLICAS) with fewer replicas than this lagging at most min-replicas-max-lag",
    ),
    opt(
        "min-replicas-max-lag",
        "10",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        true,
        "seconds since a replica's last acknowledgement for it to count toward min-replicas-to-write",
    ),
    opt(
        "replica-priority",
        "100",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        true,
        "Sentinel promotes the replica with the lowest priority first; 0: never",
    ),
    opt(
        "replica-announce-ip",
        "",
        Kind::Str,
        true,
        "the address a replica gives its master to announce (REPLCONF ip-address)",
    ),
    opt(
        "replica-announce-port",
        "0",
        Kind::Int {
            min: 0,
            max: 65535,
        },
        true,
        "the port a replica gives its master to announce (0: its own port)",
    ),
    opt(
        "replica-announced",
        "yes",
        Kind::Bool,
        true,
        "whether Sentinel lists this replica (INFO replica_announced)",
    ),
    opt(
        "repl-backlog-ttl",
        "3600",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        true,
        "seconds without replicas after which a master frees its backlog (0: never)",
    ),
    opt(
        "replica-read-only",
        "yes",
        Kind::Bool,
        true,
        "a replica refuses writes from its clients",
    ),
    opt(
        "requirepass",
        "",
        Kind::Str,
        true,
        "password clients must AUTH with",
    ),
    opt(
        "loglevel",
        "notice",
        Kind::Enum(&["debug", "verbose", "notice", "warning", "nothing"]),
        true,
        "log verbosity",
    ),
    opt(
        "logfile",
        "",
        Kind::Str,
        false,
        "log file (empty: standard error)",
    ),
    opt(
        "syslog-enabled",
        "no",
        Kind::Bool,
        false,
        "also log to syslog",
    ),
    opt("syslog-ident", "redis", Kind::Str, false, "syslog identity"),
    opt(
        "syslog-facility",
        "local0",
        Kind::Enum(&[
            "user", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
        ]),
        false,
        "syslog facility",
    ),
    opt(
        "daemonize",
        "no",
        Kind::Bool,
        false,
        "run in the background (not supported: always no)",
    ),
    opt(
        "protected-mode",
        "yes",
        Kind::Bool,
        true,
        "refuse non-loopback clients without a password",
    ),
    opt(
        "maxmemory",
        "0",
        Kind::Memory { min: 0 },
        true,
        "memory limit, bytes, process-wide (0: none; see maxmemory-policy)",
    ),
    opt(
        "maxmemory-samples",
        "5",
        Kind::Int {
            min: 1,
            max: i32::MAX as i64,
        },
        true,
        "keys sampled per database when picking what to evict",
    ),
    opt(
        "maxmemory-eviction-tenacity",
        "10",
        Kind::Int { min: 0, max: 100 },
        true,
        "how long one eviction run may take (0..100, 100: no limit)",
    ),
    opt(
        "lfu-log-factor",
        "10",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        true,
        "how slowly the LFU access counter grows",
    ),
    opt(
        "lfu-decay-time",
        "1",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        true,
        "minutes for the LFU access counter to lose one (0: never)",
    ),
    opt(
        "list-max-listpack-size",
        "-2",
        Kind::Int {
            min: -5,
            max: i32::MAX as i64,
        },
        true,
        "list node size: entries (>0) or -1..-5 for 4..64 KiB",
    ),
    opt(
        "list-compress-depth",
        "0",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        true,
        "list nodes left uncompressed at each end (compression is not built)",
    ),
    opt(
        "hash-max-listpack-entries",
        "512",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        true,
        "hashes up to this many fields stay compact",
    ),
    opt(
        "hash-max-listpack-value",
        "64",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        true,
        "hashes with fields/values up to this size stay compact",
    ),
    opt(
        "set-max-intset-entries",
        "512",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        true,
        "integer sets up to this size use an intset",
    ),
    opt(
        "zset-max-listpack-entries",
        "128",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        true,
        "sorted sets up to this many members stay compact",
    ),
    opt(
        "zset-max-listpack-value",
        "64",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        true,
        "sorted sets with members up to this size stay compact",
    ),
    opt(
        "hll-sparse-max-bytes",
        "3000",
        Kind::Memory { min: 0 },
        true,
        "a sparse HyperLogLog that would grow past this many bytes turns dense",
    ),
    opt(
        "busy-reply-threshold",
        "5000",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        true,
        "a script running longer (ms) makes its shard answer BUSY and can be killed; alias lua-time-limit",
    ),
    opt(
        "stream-node-max-bytes",
        "4096",
        Kind::Memory { min: 0 },
        true,
        "a stream node (listpack) holds at most this many bytes (0: no limit)",
    ),
    opt(
        "stream-node-max-entries",
        "100",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        true,
        "a stream node holds at most this many entries (0: no limit)",
    ),
    opt(
        "maxmemory-policy",
        "noeviction",
        Kind::Enum(&[
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "noeviction",
        ]),
        true,
        "eviction policy",
    ),
    opt(
        "tls-port",
        "0",
        Kind::Int { min: 0, max: 65535 },
        false,
        "TLS port, served beside `port` (0: no TLS; with port 0, TLS only)",
    ),
    opt(
        "tls-cert-file",
        "",
        Kind::Str,
        true,
        "server certificate chain (PEM)",
    ),
    opt(
        "tls-key-file",
        "",
        Kind::Str,
        true,
        "server private key (PEM, unencrypted)",
    ),
    opt(
        "tls-key-file-pass",
        "",
        Kind::Str,
        true,
        "accepted, not supported: the key file must be unencrypted",
    ),
    opt(
        "tls-client-cert-file",
        "",
        Kind::Str,
        true,
        "accepted, not used (no outgoing TLS connections)",
    ),
    opt(
        "tls-client-key-file",
        "",
        Kind::Str,
        true,
        "accepted, not used (no outgoing TLS connections)",
    ),
    opt(
        "tls-client-key-file-pass",
        "",
        Kind::Str,
        true,
        "accepted, not used (no outgoing TLS connections)",
    ),
    opt(
        "tls-dh-params-file",
        "",
        Kind::Str,
        true,
        "accepted, not used (rustls uses ECDHE only)",
    ),
    opt(
        "tls-ca-cert-file",
        "",
        Kind::Str,
        true,
        "CA certificates (PEM) client certificates are verified against",
    ),
    opt(
        "tls-ca-cert-dir",
        "",
        Kind::Str,
        true,
        "directory of CA certificate files (PEM)",
    ),
    opt(
        "tls-auth-clients",
        "yes",
        Kind::Enum(&["no", "yes", "optional"]),
        true,
        "client certificates: required (yes), verified if sent (optional), or not asked (no)",
    ),
    opt(
        "tls-protocols",
        "",
        Kind::Str,
        true,
        "TLS versions to accept: TLSv1.2 and/or TLSv1.3 (empty: both)",
    ),
    opt(
        "tls-ciphers",
        "",
        Kind::Str,
        true,
        "TLS 1.2 cipher list, OpenSSL names (ECDHE-...-GCM / -CHACHA20-POLY1305 are available)",
    ),
    opt(
        "tls-ciphersuites",
        "",
        Kind::Str,
        true,
        "TLS 1.3 cipher suites (TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256)",
    ),
    opt(
        "tls-prefer-server-ciphers",
        "no",
        Kind::Bool,
        true,
        "choose the cipher by the server's order, not the client's",
    ),
    opt(
        "tls-session-caching",
        "yes",
        Kind::Bool,
        true,
        "let clients resume TLS sessions",
    ),
    opt(
        "tls-session-cache-size",
        "20480",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        true,
        "TLS sessions kept for resumption",
    ),
    opt(
        "tls-session-cache-timeout",
        "300",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        true,
        "accepted, not applied (rustls's session cache has no timeout)",
    ),
    opt(
        "tls-replication",
        "no",
        Kind::Bool,
        true,
        "accepted, not used (no replication yet)",
    ),
    opt(
        "cluster-enabled",
        "no",
        Kind::Enum(&["yes", "no", "emulated"]),
        false,
        "Redis Cluster mode; `emulated`: one node owning every slot, for cluster clients against one process",
    ),
    opt(
        "cluster-config-file",
        "nodes.conf",
        Kind::Str,
        false,
        "the node's cluster configuration, under `dir` (written by the node)",
    ),
    opt(
        "cluster-port",
        "0",
        Kind::Int { min: 0, max: 65535 },
        false,
        "cluster bus port (0: port + 10000; the bus is not built yet)",
    ),
    opt(
        "cluster-node-timeout",
        "15000",
        Kind::Int { min: 0, max: i64::MAX },
        true,
        "milliseconds before an unreachable node counts as failing (used by the bus, not built yet)",
    ),
    opt(
        "cluster-announce-ip",
        "",
        Kind::Str,
        true,
        "the IP this node announces to clients and peers",
    ),
    opt(
        "cluster-announce-hostname",
        "",
        Kind::Str,
        true,
        "the hostname this node announces (CLUSTER NODES, SLOTS and SHARDS show it)",
    ),
    opt(
        "cluster-announce-port",
        "0",
        Kind::Int { min: 0, max: 65535 },
        true,
        "the client port this node announces (0: its own)",
    ),
    opt(
        "cluster-announce-bus-port",
        "0",
        Kind::Int { min: 0, max: 65535 },
        true,
        "the bus port this node announces (0: cluster-port)",
    ),
    opt(
        "cluster-announce-tls-port",
        "0",
        Kind::Int { min: 0, max: 65535 },
        true,
        "accepted, not used yet",
    ),
    opt(
        "cluster-require-full-coverage",
        "yes",
        Kind::Bool,
        true,
        "the cluster is down while any slot is unserved",
    ),
    opt(
        "cluster-allow-reads-when-down",
        "no",
        Kind::Bool,
        true,
        "serve reads while the cluster is down",
    ),
    opt(
        "cluster-allow-pubsubshard-when-down",
        "yes",
        Kind::Bool,
        true,
        "serve shard channels while the cluster is down",
    ),
    opt(
        "cluster-replica-validity-factor",
        "10",
        Kind::Int { min: 0, max: i32::MAX as i64 },
        true,
        "accepted, not used yet (no replica failover)",
    ),
    opt(
        "cluster-migration-barrier",
        "1",
        Kind::Int { min: 0, max: i32::MAX as i64 },
        true,
        "accepted, not used yet (no replica migration)",
    ),
    opt(
        "cluster-allow-replica-migration",
        "yes",
        Kind::Bool,
        true,
        "accepted, not used yet (no replica migration)",
    ),
    opt(
        "cluster-replica-no-failover",
        "no",
        Kind::Bool,
        true,
        "accepted, not used yet (no failover)",
    ),
    opt(
        "cluster-link-sendbuf-limit",
        "0",
        Kind::Memory { min: 0 },
        true,
        "accepted, not used yet (no cluster bus)",
    ),
    opt(
        "tls-cluster",
        "no",
        Kind::Bool,
        true,
        "accepted, not used (no cluster bus yet)",
    ),
];

/// Parses a memory size the way Redis's `memtoull` does.
pub fn parse_memory(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let (num, mul) = [
        ("gb", 1u64 << 30),
        ("g", 1_000_000_000),
        ("mb", 1 << 20),
        ("m", 1_000_000),
        ("kb", 1 << 10),
        ("k", 1000),
        ("b", 1),
    ]
    .iter()
    .find_map(|(suf, mul)| lower.strip_suffix(suf).map(|n| (n.to_string(), *mul)))
    .unwrap_or((lower.clone(), 1));
    let n: u64 = num.parse().ok()?;
    n.checked_mul(mul)
}

/// Options CONFIG SET may change only as `enable-protected-configs` allows (Redis 7.0's
/// PROTECTED_CONFIG: where data files go).
const PROTECTED: &[&str] = &["dir", "dbfilename"];

/// Old names Redis still accepts for an option, as (alias, option).
const ALIASES: &[(&str, &str)] = &[
    ("lua-time-limit", "busy-reply-threshold"),
    ("slaveof", "replicaof"),
    ("slave-serve-stale-data", "replica-serve-stale-data"),
    ("slave-read-only", "replica-read-only"),
    ("repl-ping-slave-period", "repl-ping-replica-period"),
    ("slave-priority", "replica-priority"),
    ("slave-announce-ip", "replica-announce-ip"),
    ("slave-announce-port", "replica-announce-port"),
    ("min-slaves-to-write", "min-replicas-to-write"),
    ("min-slaves-max-lag", "min-replicas-max-lag"),
    (
        "cluster-slave-validity-factor",
        "cluster-replica-validity-factor",
    ),
    ("cluster-slave-no-failover", "cluster-replica-no-failover"),
];

fn find(name: &str) -> Option<&'static OptDef> {
    let name = ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
        .map_or(name, |(_, target)| target);
    OPTIONS.iter().find(|o| o.name.eq_ignore_ascii_case(name))
}

/// Checks and normalises a value for an option (memory sizes become byte counts, booleans
/// lower case). The error text is Redis's CONFIG SET reason.
pub fn normalise(def: &OptDef, value: &str) -> Result<String, String> {
    match def.kind {
        Kind::Int { min, max } => {
            let n: i64 = value
                .parse()
                .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
            if n < min || n > max {
                return Err(format!(
                    "argument must be between {min} and {max} inclusive"
                ));
            }
            // Redis accepts any hz and clamps it to 1..500.
            if def.name == "hz" {
                return Ok(n.clamp(1, 500).to_string());
            }
            Ok(n.to_string())
        }
        Kind::Memory { min } => {
            let n =
                parse_memory(value).ok_or_else(|| "argument must be a memory value".to_string())?;
            if n < min || n > i64::MAX as u64 {
                return Err(format!(
                    "argument must be between {min} and {} inclusive",
                    i64::MAX
                ));
            }
            Ok(n.to_string())
        }
        Kind::Bool => match value.to_ascii_lowercase().as_str() {
            "yes" => Ok("yes".into()),
            "no" => Ok("no".into()),
            _ => Err("argument must be 'yes' or 'no'".into()),
        },
        Kind::Str if def.name == "notify-keyspace-events" => {
            let flags = shards::shard::parse_flags(value).ok_or_else(|| {
                "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".to_string()
            })?;
            Ok(shards::shard::flags_to_string(flags))
        }
        Kind::Str if def.name == "latency-tracking-info-percentiles" => {
            let mut out = Vec::new();
            for word in value.split_whitespace() {
                let p: f64 = word
                    .parse()
                    .ok()
                    .filter(|p: &f64| !p.is_nan())
                    .ok_or("Invalid latency-tracking-info-percentiles parameters")?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(
                        "latency-tracking-info-percentiles parameters should sit between [0.0,100.0]"
                            .into(),
                    );
                }
                out.push(p.to_string());
            }
            Ok(out.join(" "))
        }
        Kind::Str if def.name == "save" => {
            crate::save::check_save_points(value)?;
            Ok(value.split_whitespace().collect::<Vec<_>>().join(" "))
        }
        Kind::Str => Ok(value.to_string()),
        Kind::Enum(choices) => {
            let v = value.to_ascii_lowercase();
            if choices.contains(&v.as_str()) {
                Ok(v)
            } else {
                Err(format!(
                    "argument(s) must be one of the following: {}",
                    choices.join(", ")
                ))
            }
        }
    }
}

/// The live configuration, shared by all shards.
pub struct Config {
    values: RwLock<BTreeMap<&'static str, String>>,
    generation: AtomicU64,
    /// The config file given at start-up, if any.
    pub file: Option<String>,
    /// The TLS server config the `tls-*` values make (set at start-up when `tls-port` is).
    pub tls: crate::tls::Current,
    /// `user <name> <rules…>` directives, in order (applied by `acl_cmds::init`).
    pub users: Vec<Vec<Vec<u8>>>,
    /// The configured values of options that start-up then replaced with what it decided (a
    /// port of 0, a shard count of 0): CONFIG REWRITE writes these, so the file keeps asking
    /// for what the user asked for.
    configured: RwLock<BTreeMap<&'static str, String>>,
}

impl Config {
    /// Defaults, then the config file, then command-line options.
    pub fn load(file: Option<&str>, overrides: &[(String, String)]) -> anyhow::Result<Config> {
        let mut values: BTreeMap<&'static str, String> = BTreeMap::new();
        for o in OPTIONS {
            values.insert(o.name, normalise(o, o.default).map_err(anyhow::Error::msg)?);
        }
        let mut users = Vec::new();
        let mut set = |name: &str, value: &str, origin: &str| -> anyhow::Result<()> {
            let Some(def) = find(name) else {
                bail!("{origin}: Bad directive or wrong number of arguments ('{name}')")
            };
            let v =
                normalise(def, value).map_err(|e| anyhow::anyhow!("{origin}: '{name}': {e}"))?;
            values.insert(def.name, v);
            Ok(())
        };
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {path}"))?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let origin = format!("{path}:{}", i + 1);
                let mut ranges = Vec::new();
                let mut scratch = Vec::new();
                if !shards::resp::split_args(line.as_bytes(), &mut ranges, &mut scratch) {
                    bail!("{origin}: unbalanced quotes in configuration line");
                }
                if ranges
                    .first()
                    .is_some_and(|r| scratch[r.clone()].eq_ignore_ascii_case(b"user"))
                {
                    if ranges.len() < 2 {
                        bail!("{origin}: Bad directive or wrong number of arguments ('user')");
                    }
                    users.push(
                        ranges[1..]
                            .iter()
                            .map(|r| scratch[r.clone()].to_vec())
                            .collect(),
                    );
                    continue;
                }
                let words: Vec<String> = ranges
                    .iter()
                    .map(|r| String::from_utf8_lossy(&scratch[r.clone()]).into_owned())
                    .collect();
                let Some((name, rest)) = words.split_first() else {
                    continue;
                };
                set(name, &rest.join(" "), &origin)?;
            }
        }
        for (name, value) in overrides {
            if name.eq_ignore_ascii_case("user") {
                users.push(
                    value
                        .split(' ')
                        .filter(|w| !w.is_empty())
                        .map(|w| w.as_bytes().to_vec())
                        .collect(),
                );
                continue;
            }
            set(name, value, "command line")?;
        }
        if values.get("daemonize").map(String::as_str) == Some("yes") {
            bail!("daemonize yes is not supported; run shardis under a supervisor instead");
        }
        Ok(Config {
            values: RwLock::new(values),
            generation: AtomicU64::new(0),
            file: file.map(str::to_string),
            tls: Default::default(),
            users,
            configured: Default::default(),
        })
    }

    /// A value by name (names come from [`OPTIONS`]).
    pub fn get(&self, name: &str) -> String {
        self.values
            .read()
            .map(|v| v.get(name).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    pub fn get_i64(&self, name: &str) -> i64 {
        self.get(name).parse().unwrap_or(0)
    }

    /// Records a value decided at start-up (the port the kernel picked, the shard count).
    pub fn set_startup(&self, name: &'static str, value: String) {
        if let Ok(mut v) = self.values.write() {
            if let Some(old) = v.insert(name, value) {
                if let Ok(mut c) = self.configured.write() {
                    c.entry(name).or_insert(old);
                }
            }
        }
    }

    /// Bumped by every CONFIG SET; shards refresh their cached values when it moves.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Every (name, value) whose name matches one of the glob patterns (CONFIG GET).
    pub fn matching(&self, patterns: &[&[u8]]) -> Vec<(String, String)> {
        let values = match self.values.read() {
            Ok(v) => v,
            Err(_) => return Vec::new(),
        };
        let wanted = |name: &str| {
            patterns
                .iter()
                .any(|p| shards::glob::matches(p, name.as_bytes(), true))
        };
        let mut out: Vec<(String, String)> = values
            .iter()
            .filter(|(k, _)| wanted(k))
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        for (alias, target) in ALIASES {
            if wanted(alias) {
                out.push((
                    alias.to_string(),
                    values.get(target).cloned().unwrap_or_default(),
                ));
            }
        }
        out
    }

    /// CONFIG SET of several pairs at once, all or nothing, checked in Redis's order: first
    /// every name (the first that is unknown, immutable, protected or repeated fails the whole
    /// command), then every value; only when all pass is any applied. `local`: the client is
    /// on the loopback interface or a Unix socket (for `enable-protected-configs local`).
    pub fn set_many(&self, pairs: &[(&[u8], &[u8])], local: bool) -> Result<(), String> {
        let failed = |name: &str, why: &str| {
            format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {why}")
        };
        let mut defs: Vec<&'static OptDef> = Vec::with_capacity(pairs.len());
        for (i, (name, _)) in pairs.iter().enumerate() {
            let name_s = String::from_utf8_lossy(name);
            let Some(def) = find(&name_s) else {
                return Err(format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{name_s}'"
                ));
            };
            if !def.mutable {
                return Err(failed(&name_s, "can't set immutable config"));
            }
            if PROTECTED.contains(&def.name) && !self.protected_allowed(local) {
                return Err(failed(&name_s, "can't set protected config"));
            }
            if pairs[..i].iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                return Err(failed(&name_s, "duplicate parameter"));
            }
            defs.push(def);
        }
        let mut checked = Vec::with_capacity(pairs.len());
        for (def, (name, value)) in defs.iter().zip(pairs) {
            let v = normalise(def, &String::from_utf8_lossy(value))
                .map_err(|e| failed(&String::from_utf8_lossy(name), &e))?;
            checked.push((def.name, v));
        }
        self.rebuild_tls(&checked)?;
        if let Ok(mut values) = self.values.write() {
            for (k, v) in checked {
                values.insert(k, v);
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Whether `enable-protected-configs` lets this client change a protected option.
    fn protected_allowed(&self, local: bool) -> bool {
        match self.get("enable-protected-configs").as_str() {
            "yes" => true,
            "local" => local,
            _ => false,
        }
    }
}

impl Config {
    /// CONFIG SET of a `tls-*` option while TLS is served: the server config is rebuilt with
    /// the new values and replaces the old one only if that works (Redis's error otherwise).
    fn rebuild_tls(&self, checked: &[(&'static str, String)]) -> Result<(), String> {
        let Some((name, _)) = checked
            .iter()
            .find(|(k, _)| crate::tls::REBUILD_ON.contains(k))
        else {
            return Ok(());
        };
        if self.get_i64("tls-port") == 0 {
            return Ok(());
        }
        let get = |key: &str| {
            checked
                .iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map_or_else(|| self.get(key), |(_, v)| v.clone())
        };
        match crate::tls::build(&get) {
            Ok(tls) => {
                self.tls.set(tls);
                Ok(())
            }
            Err(e) => {
                crate::log!("{e}");
                crate::log!("Failed applying new configuration. Possibly related to new {name} setting. Restoring previous settings.");
                Err(format!("ERR CONFIG SET failed (possibly related to argument '{name}') - Unable to update TLS configuration. Check server logs."))
            }
        }
    }
}

/// Builds the clap command line from the option table, so `--help` lists every option.
pub fn cli() -> clap::Command {
    let mut cmd = clap::Command::new("shardis")
        .version(env!("CARGO_PKG_VERSION"))
        .about("A Redis-compatible, thread-per-core in-memory data store")
        .arg(
            clap::Arg::new("config-file")
                .help("a configuration file in redis.conf syntax")
                .required(false),
        );
    cmd = cmd.arg(
        clap::Arg::new("user")
            .long("user")
            .help(
                "an ACL user: `--user \"<name> <rules…>\"` (repeatable, like redis.conf's `user`)",
            )
            .num_args(1..)
            .action(clap::ArgAction::Append)
            .value_name("USER"),
    );
    for o in OPTIONS {
        cmd = cmd.arg(
            clap::Arg::new(o.name)
                .long(o.name)
                .aliases(
                    ALIASES
                        .iter()
                        .filter(|(_, target)| *target == o.name)
                        .map(|(alias, _)| *alias),
                )
                .help(format!(
                    "{} [default: {}]",
                    o.help,
                    if o.default.is_empty() {
                        "\"\""
                    } else {
                        o.default
                    }
                ))
                .num_args(1..)
                .action(clap::ArgAction::Append)
                .value_name("VALUE"),
        );
    }
    cmd
}

/// Parses the process arguments into a [`Config`].
pub fn from_args() -> anyhow::Result<Config> {
    let m = cli().get_matches();
    let file = m.get_one::<String>("config-file").cloned();
    let mut overrides = Vec::new();
    for o in OPTIONS {
        let Some(occurrences) = m.get_occurrences::<String>(o.name) else {
            continue;
        };
        let occurrences: Vec<String> = occurrences
            .map(|vals| vals.map(String::as_str).collect::<Vec<_>>().join(" "))
            .collect();
        if o.name == "save" {
            // Like redis-server, every `save` adds snapshot points.
            overrides.push((o.name.to_string(), occurrences.join(" ").trim().to_string()));
        } else if let Some(last) = occurrences.last() {
            // Like redis-server, a repeated option keeps its last value.
            overrides.push((o.name.to_string(), last.clone()));
        }
    }
    if let Some(users) = m.get_occurrences::<String>("user") {
        for vals in users {
            let def = vals.map(String::as_str).collect::<Vec<_>>().join(" ");
            overrides.push(("user".to_string(), def));
        }
    }
    Config::load(file.as_deref(), &overrides)
}

/// The comment CONFIG REWRITE puts above the settings it appends (Redis's).
const REWRITE_SIGNATURE: &str = "# Generated by CONFIG REWRITE";

/// Directives a config file may hold that are not options (kept as they are by a rewrite).
const DIRECTIVES: &[&str] = &[
    "include",
    "rename-command",
    "user",
    "loadmodule",
    "sentinel",
];

/// Options a rewrite always writes, even at their defaults, as Redis's does.
const ALWAYS_WRITTEN: &[&str] = &["dir", "save", "latency-tracking-info-percentiles"];

/// A memory size as Redis's rewrite writes it: in gb, mb or kb when it divides evenly.
fn format_memory(bytes: u64) -> String {
    match bytes {
        0 => "0".into(),
        b if b % (1 << 30) == 0 => format!("{}gb", b >> 30),
        b if b % (1 << 20) == 0 => format!("{}mb", b >> 20),
        b if b % (1 << 10) == 0 => format!("{}kb", b >> 10),
        b => b.to_string(),
    }
}

/// A string in double quotes with Redis's escapes (its `sdscatrepr`).
fn quote(v: &str) -> String {
    let mut out = String::from("\"");
    for b in v.bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            7 => out.push_str("\\a"),
            8 => out.push_str("\\b"),
            b if b.is_ascii_graphic() || b == b' ' => out.push(b as char),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

/// The lines a rewrite writes for an option holding `value`.
fn rewrite_lines(def: &OptDef, value: &str) -> Vec<String> {
    let name = def.name;
    match def.kind {
        Kind::Memory { .. } => vec![format!(
            "{name} {}",
            value.parse().map_or(value.to_string(), format_memory)
        )],
        Kind::Str if name == "save" => {
            let words: Vec<&str> = value.split_whitespace().collect();
            if words.is_empty() {
                return vec!["save \"\"".into()];
            }
            words
                .chunks(2)
                .map(|p| format!("save {}", p.join(" ")))
                .collect()
        }
        Kind::Str
            if [
                "bind",
                "latency-tracking-info-percentiles",
                "client-output-buffer-limit",
            ]
            .contains(&name)
                && !value.is_empty() =>
        {
            vec![format!("{name} {value}")]
        }
        Kind::Str => vec![format!("{name} {}", quote(value))],
        _ => vec![format!("{name} {value}")],
    }
}

impl Config {
    /// CONFIG REWRITE, as Redis 7.0 does it: every line of the file is kept (trimmed) in its
    /// place, except an option's lines, which get its running value — its first line does,
    /// and any further ones are blanked (a run of blank lines becomes one). An option the
    /// file lacks is appended, below a `# Generated by CONFIG REWRITE` line (added once),
    /// when its value differs from the default (`dir`, `save` and the latency percentiles
    /// always are, as in Redis). A line naming no option is kept as a `# ??? ` comment.
    pub fn rewrite(&self) -> Result<(), String> {
        let Some(path) = &self.file else {
            return Err("ERR The server is running without a config file".into());
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("ERR Rewriting config file: {e}"))?;
        let mut values = self
            .values
            .read()
            .map_err(|_| "ERR config lock poisoned".to_string())?
            .clone();
        if let Ok(c) = self.configured.read() {
            values.extend(c.iter().map(|(k, v)| (*k, v.clone())));
        }
        // As Redis writes its working directory: absolute, so the file means the same from
        // wherever the server is started next.
        if let Ok(dir) = std::fs::canonicalize(&values["dir"]) {
            values.insert("dir", dir.to_string_lossy().into_owned());
        }
        let mut lines: Vec<String> = Vec::new();
        let mut at: BTreeMap<&'static str, std::collections::VecDeque<usize>> = BTreeMap::new();
        let mut signed = false;
        let split: Vec<&str> = if text.is_empty() {
            Vec::new()
        } else {
            text.split('\n').collect()
        };
        for raw in split {
            let line = raw.trim_matches(|c| matches!(c, '\r' | '\n' | '\t' | ' '));
            if line.is_empty() || line.starts_with('#') {
                signed |= line == REWRITE_SIGNATURE;
                lines.push(line.to_string());
                continue;
            }
            let first = line.split_whitespace().next().unwrap_or("");
            match find(first) {
                Some(def) => {
                    at.entry(def.name).or_default().push_back(lines.len());
                    lines.push(line.to_string());
                }
                None if DIRECTIVES.iter().any(|d| d.eq_ignore_ascii_case(first)) => {
                    lines.push(line.to_string())
                }
                None => lines.push(format!("# ??? {line}")),
            }
        }
        for def in OPTIONS {
            let value = &values[def.name];
            let default = normalise(def, def.default).unwrap_or_default();
            let force = value != &default || ALWAYS_WRITTEN.contains(&def.name);
            let mut old = at.remove(def.name).unwrap_or_default();
            if old.is_empty() && !force {
                continue;
            }
            for new in rewrite_lines(def, value) {
                if let Some(i) = old.pop_front() {
                    lines[i] = new;
                } else {
                    if !signed {
                        lines.push(REWRITE_SIGNATURE.to_string());
                        signed = true;
                    }
                    lines.push(new);
                }
            }
            for i in old {
                lines[i].clear();
            }
        }
        let mut out = String::new();
        let mut was_empty = false;
        for line in &lines {
            if line.is_empty() && std::mem::replace(&mut was_empty, true) {
                continue;
            }
            was_empty = line.is_empty();
            out.push_str(line);
            out.push('\n');
        }
        let tmp = format!("{path}.tmp-shardis");
        std::fs::write(&tmp, out).map_err(|e| format!("ERR Rewriting config file: {e}"))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("ERR Rewriting config file: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_formats_values_as_redis_does() {
        assert_eq!(format_memory(0), "0");
        assert_eq!(format_memory(3 << 10), "3kb");
        assert_eq!(format_memory(10 << 20), "10mb");
        assert_eq!(format_memory(1 << 30), "1gb");
        assert_eq!(format_memory(1000), "1000");
        assert_eq!(quote("a \"b\"\\\n\u{1}"), "\"a \\\"b\\\"\\\\\\n\\x01\"");
        let save = find("save").unwrap();
        assert_eq!(rewrite_lines(save, ""), ["save \"\""]);
        assert_eq!(
            rewrite_lines(save, "3600 1 300 100"),
            ["save 3600 1", "save 300 100"]
        );
        let maxmemory = find("maxmemory").unwrap();
        assert_eq!(rewrite_lines(maxmemory, "1048576"), ["maxmemory 1mb"]);
        let dbfilename = find("dbfilename").unwrap();
        assert_eq!(
            rewrite_lines(dbfilename, "a b.rdb"),
            ["dbfilename \"a b.rdb\""]
        );
    }
}
