//! Redis Cluster's commands: CLUSTER and its subcommands, ASKING, READONLY, READWRITE and
//! MIGRATE. All of them are about the node or the connection, not one shard's data, so the
//! server layer carries them out (`src/cluster/`); this file only declares them.

use super::spec::{acl, flag, kflag, Arg, ArgType, CommandSpec, ConnCmd, Group, KeySpec, Route};

const CLUSTER_SUB: CommandSpec = CommandSpec {
    group: Group::Cluster,
    flags: flag::STALE,
    route: Route::Server(ConnCmd::Cluster),
    since: "3.0.0",
    complexity: "O(1)",
    ..CommandSpec::DEFAULT
};

/// Subcommands that change the cluster's configuration.
const CLUSTER_ADMIN: CommandSpec = CommandSpec {
    flags: flag::ADMIN | flag::STALE | flag::NO_ASYNC_LOADING,
    ..CLUSTER_SUB
};

const NODE_ID: Arg = Arg::new("node-id", ArgType::String);
const SLOT: Arg = Arg::new("slot", ArgType::Integer);

const SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "addslots",
        arity: -3,
        summary: "Assigns new hash slots to a node.",
        complexity: "O(N) where N is the total number of hash slot arguments",
        args: &[SLOT.multiple()],
        ..CLUSTER_ADMIN
    },
    CommandSpec {
        name: "addslotsrange",
        arity: -4,
        summary: "Assigns new hash slot ranges to a node.",
        since: "7.0.0",
        complexity: "O(N) where N is the total number of the slots between the start slot and end slot arguments.",
        args: &[Arg::block(
            "range",
            &[Arg::new("start-slot", ArgType::Integer), Arg::new("end-slot", ArgType::Integer)],
        )
        .multiple()],
        ..CLUSTER_ADMIN
    },
    CommandSpec {
        name: "bumpepoch",
        arity: 2,
        summary: "Advances the cluster config epoch.",
        tips: &["nondeterministic_output"],
        ..CLUSTER_ADMIN
    },
    CommandSpec {
        name: "count-failure-reports",
        arity: 3,
        summary: "Returns the number of active failure reports active for a node.",
        complexity: "O(N) where N is the number of failure reports",
        args: &[NODE_ID],
        tips: &["nondeterministic_output"],
        flags: flag::ADMIN | flag::STALE,
        ..CLUSTER_SUB
    },
    CommandSpec {
        name: "countkeysinslot",
        arity: 3,
        summary: "Returns the number of keys in a hash slot.",
        args: &[SLOT],
        ..CLUSTER_SUB
    },
    CommandSpec {
        name: "delslots",
        arity: -3,
        summary: "Sets hash slots as unbound for a node.",
        complexity: "O(N) where N is the total number of hash slot arguments",
        args: &[SLOT.multiple()],
        ..CLUSTER_ADMIN
    },
    CommandSpec {
        name: "delslotsrange",
        arity: -4,
        summary: "Sets hash slot ranges as unbound for a node.",
        since: "7.0.0",
        complexity: "O(N) where N is the total number of the slots between the start slot and end slot arguments.",
        args: &[Arg::block(
            "range",
            &[Arg::new("start-slot", ArgType::Integer), Arg::new("end-slot", ArgType::Integer)],
        )
        .multiple()],
        ..CLUSTER_ADMIN
    },
    CommandSpec {
        name: "failover",
        arity: -2,
        summary: "Forces a replica to perform a manual failover of its master.",
        args: &[Arg::oneof(
            "options",
            &[Arg::token("force", "FORCE"), Arg::token("takeover", "TAKEOVER")],
        )
        .optional()],
        ..CLUSTER_ADMIN
    },
    CommandSpec {
        name: "flushslots",
        arity: 2,
        summary: "Deletes all slots information from a node.",
        ..CLUSTER_ADMIN
    },
    CommandSpec {
        name: "forget",
        arity: 3,
        summary: "Removes a node from the nodes table.",
        args: &[NODE_ID],
        ..CLUSTER_ADMIN
    },
    CommandSpec {
        name: "getkeysinslot",
        arity: 4,
        summary: "Returns the key names in a hash slot.",
        complexity: "O(N) where N is the number of keys in the slot (here: the keys of the shard that owns it)",
        args: &[SLOT, Arg::new("count", ArgType::Integer)],
        tips: &["nondeterministic_output"],
        ..CLUSTER_SUB
    },
    CommandSpec {
        name: "help",
        arity: 2,
        summary: "Returns helpful text about the different subcommands.",
        since: "5.0.0",
        flags: flag::LOADING | flag::STALE,
        ..CLUSTER_SUB
    },
    CommandSpec {
        name: "info",
        arity: 2,
        summary: "Returns information about the state of a node.",
        tips: &["nondeterministic_output"],
        ..CLUSTER_SUB
    },
    CommandSpec {
        name: "keyslot",
        arity: 3,
        summary: "Returns the hash slot for a key.",
        complexity: "O(N) where N is the number of bytes in the key",
        args: &[Arg::new("key", ArgType::String)],
        ..CLUSTER_SUB
    },
    CommandSpec {
        name: "links",
        arity: 2,
        summary: "Returns a list of all TCP links to and from peer nodes.",
        since: "7.0.0",
        complexity: "O(N) where N is the total number of Cluster nodes",
        tips: &["nondeterministic_output"],
        ..CLUSTER_SUB
    },
    CommandSpec {
        name: "meet",
        arity: -4,
        summary: "Forces a node to handshake with another node.",
        history: &[("4.0.0", "Added the optional `cluster_bus_port` argument.")],
        args: &[
            Arg::new("ip", ArgType::String),
            Arg::new("port", ArgType::Integer),
            Arg::new("cluster-bus-port", ArgType::Integer).since("4.0.0").optional(),
        ],
        ..CLUSTER_ADMIN
    },
    CommandSpec {
        name: "myid",
        arity: 2,
        summary: "Returns the ID of a node.",
        ..CLUSTER_SUB
    },
    CommandSpec {
        name: "nodes",
        arity: 2,
        summary: "Returns the cluster configuration for a node.",
        complexity: "O(N) where N is the total number of Cluster nodes",
        tips: &["nondeterministic_output"],
        ..CLUSTER_SUB
    },
    CommandSpec {
        name: "replicas",
        arity: 3,
        summary: "Lists the replica nodes of a master node.",
        since: "5.0.0",
        args: &[NODE_ID],
        tips: &["nondeterministic_output"],
        flags: flag::ADMIN | flag::STALE,
        ..CLUSTER_SUB
    },
    CommandSpec {
        name: "replicate",
        arity: 3,
        summary: "Configure a node as replica of a master node.",
        args: &[NODE_ID],
        ..CLUSTER_ADMIN
    },
    CommandSpec {
        name: "reset",
        arity: -2,
        summary: "Resets a node.",
        complexity: "O(N) where N is the number of known nodes. The command may execute a FLUSHALL as a side effect.",
        args: &[Arg::oneof(
            "reset-type",
            &[Arg::token("hard", "HARD"), Arg::token("soft", "SOFT")],
        )
        .optional()],
        flags: flag::ADMIN | flag::STALE | flag::NOSCRIPT,
        ..CLUSTER_SUB
    },
    CommandSpec {
        name: "saveconfig",
        arity: 2,
        summary: "Forces a node to save the cluster configuration to disk.",
        flags: flag::ADMIN | flag::STALE,
        ..CLUSTER_SUB
    },
    CommandSpec {
        name: "set-config-epoch",
        arity: 3,
        summary: "Sets the configuration epoch for a new node.",
        args: &[Arg::new("config-epoch", ArgType::Integer)],
        flags: flag::ADMIN | flag::STALE,
        ..CLUSTER_SUB
    },
    CommandSpec {
        name: "setslot",
        arity: -4,
        summary: "Binds a hash slot to a node.",
        args: &[
            SLOT,
            Arg::oneof(
                "subcommand",
                &[
                    Arg::new("node-id", ArgType::String).with_token("IMPORTING"),
                    Arg::new("node-id", ArgType::String).with_token("MIGRATING"),
                    Arg::new("node-id", ArgType::String).with_token("NODE"),
                    Arg::token("stable", "STABLE"),
                ],
            ),
        ],
        ..CLUSTER_ADMIN
    },
    CommandSpec {
        name: "shards",
        arity: 2,
        summary: "Returns the mapping of cluster slots to shards.",
        since: "7.0.0",
        complexity: "O(N) where N is the total number of cluster nodes",
        tips: &["nondeterministic_output"],
        ..CLUSTER_SUB
    },
    CommandSpec {
        name: "slaves",
        arity: 3,
        summary: "Lists the replica nodes of a master node.",
        args: &[NODE_ID],
        tips: &["nondeterministic_output"],
        deprecated: Some(("5.0.0", "`CLUSTER REPLICAS`")),
        flags: flag::ADMIN | flag::STALE,
        ..CLUSTER_SUB
    },
    CommandSpec {
        name: "slots",
        arity: 2,
        summary: "Returns the mapping of cluster slots to nodes.",
        complexity: "O(N) where N is the total number of Cluster nodes",
        history: &[
            ("4.0.0", "Added node IDs."),
            ("7.0.0", "Added additional networking metadata field."),
        ],
        tips: &["nondeterministic_output"],
        deprecated: None,
        ..CLUSTER_SUB
    },
];

/// MIGRATE's keys: the one at index 3, or (when it is empty) those after KEYS.
fn migrate_keys(argv: &[&[u8]], out: &mut Vec<usize>) {
    if argv.get(3).is_some_and(|k| k.is_empty()) {
        if let Some(at) = (6..argv.len()).find(|&i| argv[i].eq_ignore_ascii_case(b"keys")) {
            out.extend(at + 1..argv.len());
        }
    } else if argv.len() > 3 {
        out.push(3);
    }
}

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "cluster",
        arity: -2,
        route: Route::Server(ConnCmd::Cluster),
        group: Group::Cluster,
        summary: "A container for Redis Cluster commands.",
        since: "3.0.0",
        complexity: "Depends on subcommand.",
        subcommands: SUBCOMMANDS,
        ..CommandSpec::DEFAULT
    },
    CommandSpec {
        name: "asking",
        arity: 1,
        flags: flag::FAST,
        acl: acl::CONNECTION,
        group: Group::Cluster,
        route: Route::Server(ConnCmd::Cluster),
        summary: "Signals that a cluster client is following an -ASK redirect.",
        since: "3.0.0",
        complexity: "O(1)",
        ..CommandSpec::DEFAULT
    },
    CommandSpec {
        name: "readonly",
        arity: 1,
        flags: flag::FAST | flag::LOADING | flag::STALE,
        acl: acl::CONNECTION,
        group: Group::Cluster,
        route: Route::Server(ConnCmd::Cluster),
        summary: "Enables read-only queries for a connection to a Redis Cluster replica node.",
        since: "3.0.0",
        complexity: "O(1)",
        ..CommandSpec::DEFAULT
    },
    CommandSpec {
        name: "readwrite",
        arity: 1,
        flags: flag::FAST | flag::LOADING | flag::STALE,
        acl: acl::CONNECTION,
        group: Group::Cluster,
        route: Route::Server(ConnCmd::Cluster),
        summary: "Enables read-write queries for a connection to a Reids Cluster replica node.",
        since: "3.0.0",
        complexity: "O(1)",
        ..CommandSpec::DEFAULT
    },
    CommandSpec {
        name: "migrate",
        arity: -6,
        flags: flag::WRITE | flag::MOVABLE_KEYS,
        acl: acl::KEYSPACE | acl::DANGEROUS,
        group: Group::Generic,
        keys: &[
            KeySpec::one(3, kflag::RW | kflag::ACCESS | kflag::DELETE),
            KeySpec {
                notes: None,
                flags: kflag::RW | kflag::ACCESS | kflag::DELETE | kflag::INCOMPLETE,
                begin: super::spec::BeginSearch::Keyword {
                    keyword: "KEYS",
                    startfrom: -2,
                },
                find: super::spec::FindKeys::Range {
                    lastkey: -1,
                    step: 1,
                    limit: 0,
                },
            },
        ],
        getkeys: Some(migrate_keys),
        route: Route::Server(ConnCmd::Migrate),
        summary: "Atomically transfers a key from one Redis instance to another.",
        since: "2.6.0",
        complexity: "This command actually executes a DUMP+DEL in the source instance, and a RESTORE in the target instance. See the pages of these commands for time complexity. Also an O(N) data transfer between the two instances is performed.",
        history: &[
            ("3.0.0", "Added the `COPY` and `REPLACE` options."),
            ("3.0.6", "Added the `KEYS` option."),
            ("4.0.7", "Added the `AUTH` option."),
            ("6.0.0", "Added the `AUTH2` option."),
        ],
        tips: &["nondeterministic_output"],
        args: &[
            Arg::new("host", ArgType::String),
            Arg::new("port", ArgType::Integer),
            Arg::oneof(
                "key-selector",
                &[Arg::key("key", 0), Arg::token("empty-string", "\"\"")],
            ),
            Arg::new("destination-db", ArgType::Integer),
            Arg::new("timeout", ArgType::Integer),
            Arg::token("copy", "COPY").since("3.0.0").optional(),
            Arg::token("replace", "REPLACE").since("3.0.0").optional(),
            Arg::oneof(
                "authentication",
                &[
                    Arg::new("auth", ArgType::String).with_token("AUTH").since("4.0.7"),
                    Arg::block(
                        "auth2",
                        &[
                            Arg::new("username", ArgType::String),
                            Arg::new("password", ArgType::String),
                        ],
                    )
                    .with_token("AUTH2")
                    .since("6.0.0"),
                ],
            )
            .optional(),
            Arg::key("keys", 1).with_token("KEYS").since("3.0.6").optional().multiple(),
        ],
        ..CommandSpec::DEFAULT
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrate_finds_its_keys() {
        let mut out = Vec::new();
        migrate_keys(&[b"migrate", b"h", b"1", b"k", b"0", b"10"], &mut out);
        assert_eq!(out, vec![3]);
        out.clear();
        let argv: &[&[u8]] = &[
            b"migrate", b"h", b"1", b"", b"0", b"10", b"keys", b"a", b"b",
        ];
        migrate_keys(argv, &mut out);
        assert_eq!(out, vec![7, 8]);
        out.clear();
        migrate_keys(&[b"migrate", b"h", b"1", b"", b"0", b"10"], &mut out);
        assert!(out.is_empty());
    }
}
