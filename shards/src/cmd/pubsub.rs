//! SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their UNSUBSCRIBEs, PUBLISH, SPUBLISH and PUBSUB
//! (Redis's `pubsub.c`). Their declarations live here; subscriptions belong to connections and
//! messages cross shards, so the server carries them out (`src/pubsub.rs`).

use super::spec::{flag, kflag, Arg, ArgType, CommandSpec, ConnCmd, Group, KeySpec, Route};

const PUBSUB: CommandSpec = CommandSpec {
    group: Group::PubSub,
    flags: flag::PUBSUB | flag::NOSCRIPT | flag::LOADING | flag::STALE,
    route: Route::Server(ConnCmd::PubSub),
    complexity: "O(N) where N is the number of channels to subscribe to.",
    ..CommandSpec::DEFAULT
};

const PUBSUB_SUB: CommandSpec = CommandSpec {
    group: Group::PubSub,
    flags: flag::PUBSUB | flag::LOADING | flag::STALE,
    route: Route::Server(ConnCmd::PubSub),
    ..CommandSpec::DEFAULT
};

pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "subscribe",
        arity: -2,
        summary: "Listens for messages published to channels.",
        since: "2.0.0",
        args: &[Arg::new("channel", ArgType::String).multiple()],
        ..PUBSUB
    },
    CommandSpec {
        name: "unsubscribe",
        arity: -1,
        summary: "Stops listening to channels (all of them without arguments).",
        since: "2.0.0",
        complexity: "O(N) where N is the number of clients already subscribed to a channel.",
        args: &[Arg::new("channel", ArgType::String).optional().multiple()],
        ..PUBSUB
    },
    CommandSpec {
        name: "psubscribe",
        arity: -2,
        summary: "Listens for messages published to channels that match glob patterns.",
        since: "2.0.0",
        complexity: "O(N) where N is the number of patterns to subscribe to.",
        args: &[Arg::new("pattern", ArgType::Pattern).multiple()],
        ..PUBSUB
    },
    CommandSpec {
        name: "punsubscribe",
        arity: -1,
        summary: "Stops listening to patterns (all of them without arguments).",
        since: "2.0.0",
        complexity: "O(N) where N is the number of patterns to unsubscribe.",
        args: &[Arg::new("pattern", ArgType::Pattern).optional().multiple()],
        ..PUBSUB
    },
    CommandSpec {
        name: "ssubscribe",
        arity: -2,
        summary: "Listens for messages published to shard channels.",
        since: "7.0.0",
        complexity: "O(N) where N is the number of shard channels to subscribe to.",
        keys: &[KeySpec::range(1, -1, 1, kflag::NOT_KEY)],
        args: &[Arg::key("shardchannel", 0).multiple()],
        ..PUBSUB
    },
    CommandSpec {
        name: "sunsubscribe",
        arity: -1,
        summary: "Stops listening to shard channels (all of them without arguments).",
        since: "7.0.0",
        complexity: "O(N) where N is the number of clients already subscribed to a shard channel.",
        keys: &[KeySpec::range(1, -1, 1, kflag::NOT_KEY)],
        args: &[Arg::key("shardchannel", 0).optional().multiple()],
        ..PUBSUB
    },
    CommandSpec {
        name: "publish",
        arity: 3,
        flags: flag::PUBSUB | flag::LOADING | flag::STALE | flag::FAST,
        summary: "Posts a message to a channel; answers how many subscribers received it.",
        since: "2.0.0",
        complexity: "O(N+M) where N is the number of clients subscribed to the receiving channel and M is the total number of subscribed patterns (by any client).",
        args: &[
            Arg::new("channel", ArgType::String),
            Arg::new("message", ArgType::String),
        ],
        ..PUBSUB
    },
    CommandSpec {
        name: "spublish",
        arity: 3,
        flags: flag::PUBSUB | flag::LOADING | flag::STALE | flag::FAST,
        summary: "Posts a message to a shard channel; answers how many subscribers received it.",
        since: "7.0.0",
        complexity: "O(N) where N is the number of clients subscribed to the receiving shard channel.",
        keys: &[KeySpec::one(1, kflag::NOT_KEY)],
        args: &[
            Arg::key("shardchannel", 0),
            Arg::new("message", ArgType::String),
        ],
        ..PUBSUB
    },
    CommandSpec {
        name: "pubsub",
        arity: -2,
        flags: 0,
        summary: "Inspects the state of the Pub/Sub subsystem.",
        since: "2.8.0",
        complexity: "Depends on subcommand.",
        subcommands: PUBSUB_SUBCOMMANDS,
        ..PUBSUB
    },
];

const PUBSUB_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "channels",
        arity: -2,
        summary: "Lists the channels that have subscribers.",
        since: "2.8.0",
        complexity: "O(N) where N is the number of active channels, and assuming constant time pattern matching (relatively short channels and patterns)",
        args: &[Arg::new("pattern", ArgType::Pattern).optional()],
        ..PUBSUB_SUB
    },
    CommandSpec {
        name: "help",
        arity: 2,
        flags: flag::LOADING | flag::STALE,
        summary: "Lists the PUBSUB subcommands.",
        since: "6.2.0",
        complexity: "O(1)",
        ..PUBSUB_SUB
    },
    CommandSpec {
        name: "numpat",
        arity: 2,
        summary: "Counts the patterns that have subscribers.",
        since: "2.8.0",
        complexity: "O(1)",
        ..PUBSUB_SUB
    },
    CommandSpec {
        name: "numsub",
        arity: -2,
        summary: "Counts the subscribers of channels.",
        since: "2.8.0",
        complexity: "O(N) for the NUMSUB subcommand, where N is the number of requested channels",
        args: &[Arg::new("channel", ArgType::String).optional().multiple()],
        ..PUBSUB_SUB
    },
    CommandSpec {
        name: "shardchannels",
        arity: -2,
        summary: "Lists the shard channels that have subscribers.",
        since: "7.0.0",
        complexity: "O(N) where N is the number of active shard channels, and assuming constant time pattern matching (relatively short shard channels).",
        args: &[Arg::new("pattern", ArgType::Pattern).optional()],
        ..PUBSUB_SUB
    },
    CommandSpec {
        name: "shardnumsub",
        arity: -2,
        summary: "Counts the subscribers of shard channels.",
        since: "7.0.0",
        complexity: "O(N) for the SHARDNUMSUB subcommand, where N is the number of requested shard channels",
        args: &[Arg::new("shardchannel", ArgType::String).optional().multiple()],
        ..PUBSUB_SUB
    },
];
