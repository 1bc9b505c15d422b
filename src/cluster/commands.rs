//! CLUSTER's subcommands, ASKING, READONLY and READWRITE, with Redis 7.0's replies and error
//! texts. MEET leaves a node in handshake for the bus to greet; REPLICATE starts replication;
//! FAILOVER hands the bus a request; LINKS, COUNT-FAILURE-REPORTS and INFO's message counters
//! read what the bus publishes ([`super::bus::view`]).
//!
//! Changes go through [`super::Cluster::change`], which saves nodes.conf before answering.
//! Subcommands that depend on keys (COUNTKEYSINSLOT, GETKEYSINSLOT, SETSLOT NODE, FLUSHSLOTS,
//! RESET) first ask the shard that owns the slot (or every shard) and finish in the callback.

use super::state::{nflag, parse_slot, Node, State, SLOTS};
use super::{Cluster, Mode};
use crate::conn::Conn;
use crate::ctx::ShardCtx;
use crate::msg::{RepBody, ReqBody};
use shards::cmd::Lookup;
use shards::resp::Reply;
use shards::util::{eq_ic, parse_i64};
use shards::Error;

const DISABLED: &str = "This instance has cluster support disabled";

const HELP: &[&str] = &[
    "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ADDSLOTS <slot> [<slot> ...]",
    "    Assign slots to current node.",
    "ADDSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
    "    Assign slots which are between <start-slot> and <end-slot> to current node.",
    "BUMPEPOCH",
    "    Advance the cluster config epoch.",
    "COUNT-FAILURE-REPORTS <node-id>",
    "    Return number of failure reports for <node-id>.",
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of keys in <slot>.",
    "DELSLOTS <slot> [<slot> ...]",
    "    Delete slots information from current node.",
    "DELSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
    "    Delete slots information which are between <start-slot> and <end-slot> from current node.",
    "FAILOVER [FORCE|TAKEOVER]",
    "    Promote current replica node to being a master.",
    "FORGET <node-id>",
    "    Remove a node from the cluster.",
    "GETKEYSINSLOT <slot> <count>",
    "    Return key names stored by current node in a slot.",
    "FLUSHSLOTS",
    "    Delete current node own slots information.",
    "INFO",
    "    Return information about the cluster.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "MEET <ip> <port> [<bus-port>]",
    "    Connect nodes into a working cluster.",
    "MYID",
    "    Return the node id.",
    "NODES",
    "    Return cluster configuration seen by node. Output format:",
    "    <id> <ip:port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
    "REPLICATE <node-id>",
    "    Configure current node as replica to <node-id>.",
    "RESET [HARD|SOFT]",
    "    Reset current node (default: soft).",
    "SET-CONFIG-EPOCH <epoch>",
    "    Set config epoch of current node.",
    "SETSLOT <slot> (IMPORTING <node-id>|MIGRATING <node-id>|STABLE|NODE <node-id>)",
    "    Set slot state.",
    "REPLICAS <node-id>",
    "    Return <node-id> replicas.",
    "SAVECONFIG",
    "    Force saving cluster configuration on disk.",
    "SLOTS",
    "    Return information about slots range mappings. Each range is made of:",
    "    start, end, master and replicas IP addresses, ports and ids",
    "SHARDS",
    "    Return information about slot range mappings and the nodes associated with them.",
    "LINKS",
    "    Return information about all network links between this node and its peers.",
    "    Output format is an array where each array element is a map containing attributes of a link",
    "HELP",
    "    Prints this help.",
];

/// CLUSTER …, ASKING, READONLY, READWRITE.
pub fn handle(ctx: &ShardCtx, conn: &mut Conn, l: Lookup, argv: &[&[u8]]) -> Result<(), Error> {
    let Some(cluster) = super::get() else {
        return Err(Error::err(DISABLED));
    };
    match l.parent.map_or(l.spec.name, |_| "cluster") {
        "asking" => {
            conn.asking = true;
            conn.reply().ok();
            return Ok(());
        }
        "readonly" => {
            conn.cluster_readonly = true;
            conn.reply().ok();
            return Ok(());
        }
        "readwrite" => {
            conn.cluster_readonly = false;
            conn.reply().ok();
            return Ok(());
        }
        _ => {}
    }
    let sub = l.spec.name;
    // Reads first: they work in emulated mode too.
    match sub {
        "help" => {
            conn.reply().simples(HELP);
            return Ok(());
        }
        "info" => {
            let st = view(cluster, conn);
            conn.reply().verbatim(info_text(&st).as_bytes());
            return Ok(());
        }
        "myid" => {
            let st = cluster.state();
            conn.reply().bulk(st.me().id.as_bytes());
            return Ok(());
        }
        "keyslot" => {
            let slot = shards::slot::key_slot(argv[2]).0;
            conn.reply().int(slot as i64);
            return Ok(());
        }
        "nodes" => {
            let st = view(cluster, conn);
            conn.reply().verbatim(st.nodes_text(true).as_bytes());
            return Ok(());
        }
        "slots" => {
            let st = view(cluster, conn);
            slots_reply(&st, &mut conn.reply());
            return Ok(());
        }
        "shards" => {
            let st = view(cluster, conn);
            shards_reply(&st, &mut conn.reply());
            return Ok(());
        }
        "links" => {
            links_reply(&mut conn.reply());
            return Ok(());
        }
        "countkeysinslot" => return count_keys(ctx, conn, argv),
        "getkeysinslot" => return get_keys(ctx, conn, argv),
        "count-failure-reports" => {
            let st = cluster.state();
            let id = String::from_utf8_lossy(argv[2]);
            if st.node(&id).is_none() {
                return Err(unknown_node(&id));
            }
            let reports = super::bus::view()
                .fail_reports
                .get(&*id)
                .copied()
                .unwrap_or(0);
            conn.reply().int(reports as i64);
            return Ok(());
        }
        "replicas" | "slaves" => return replicas(cluster, conn, argv),
        _ => {}
    }
    if cluster.mode == Mode::Emulated {
        return Err(Error::err(format!(
            "CLUSTER {} is not supported with cluster-enabled emulated",
            sub.to_ascii_uppercase()
        )));
    }
    match sub {
        "addslots" | "delslots" => slots_change(cluster, conn, argv, sub == "addslots", false),
        "addslotsrange" | "delslotsrange" => {
            slots_change(cluster, conn, argv, sub == "addslotsrange", true)
        }
        "setslot" => setslot(ctx, cluster, conn, argv),
        "flushslots" => when_db_empty(
            ctx,
            conn,
            "DB must be empty to perform CLUSTER FLUSHSLOTS.",
            |conn| {
                let r = super::get().map(|c| {
                    c.change(|st| {
                        for s in 0..SLOTS as u16 {
                            if st.mine(s) {
                                st.assign(s, None);
                            }
                        }
                        Ok::<(), String>(())
                    })
                });
                reply_changed(conn, r);
            },
        ),
        "reset" => reset(ctx, conn, argv),
        "saveconfig" => match cluster.save_now() {
            Ok(()) => {
                conn.reply().ok();
                Ok(())
            }
            Err(e) => Err(Error::err(format!(
                "error saving the cluster node config: {e}"
            ))),
        },
        "set-config-epoch" => set_config_epoch(cluster, conn, argv),
        "bumpepoch" => {
            let (bumped, epoch) =
                cluster.change(|st| Ok::<_, Error>((st.bump_epoch(), st.me().config_epoch)))?;
            let word = if bumped { "BUMPED" } else { "STILL" };
            conn.reply().simple(&format!("{word} {epoch}"));
            Ok(())
        }
        "forget" => forget(cluster, conn, argv),
        "meet" => meet(cluster, conn, argv),
        "replicate" => replicate(ctx, cluster, conn, argv),
        "failover" => failover(cluster, conn, argv),
        _ => Err(Error::err(format!(
            "unknown subcommand '{}'. Try CLUSTER HELP.",
            String::from_utf8_lossy(argv[1])
        ))),
    }
}

/// The state a reply describes. In emulated mode this node announces the address the client
/// reached it on when `cluster-announce-ip` is not set.
fn view(cluster: &Cluster, conn: &Conn) -> std::sync::Arc<State> {
    let st = cluster.state();
    if cluster.mode != Mode::Emulated || !st.me().ip.is_empty() {
        return st;
    }
    let mut st = State::clone(&st);
    st.me_mut().ip = local_ip(&conn.laddr);
    std::sync::Arc::new(st)
}

/// The IP of a `ip:port` (or `[v6]:port`) address.
fn local_ip(addr: &str) -> String {
    let host = addr.rfind(':').map_or(addr, |i| &addr[..i]);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

fn unknown_node(id: &str) -> Error {
    Error::err(format!("Unknown node {id}"))
}

/// Answers OK for a change that went through, or the error that stopped it.
fn reply_changed(conn: &mut Conn, r: Option<Result<(), String>>) {
    match r {
        Some(Ok(())) => conn.reply().ok(),
        Some(Err(e)) => conn.error(&Error::err(e).text()),
        None => conn.error(&Error::err(DISABLED).text()),
    }
}

/// CLUSTER LINKS: the bus's links, as maps (RESP3) or flat arrays (RESP2).
fn links_reply(r: &mut Reply) {
    let links = super::bus::view().links;
    r.array(links.len());
    for l in links {
        r.map(6);
        r.bulk(b"direction");
        r.bulk(l.direction.as_bytes());
        r.bulk(b"node");
        r.bulk(l.node.as_bytes());
        r.bulk(b"create-time");
        r.int(l.create_time_ms as i64);
        r.bulk(b"events");
        r.bulk(l.events.as_bytes());
        r.bulk(b"send-buffer-allocated");
        r.int(l.send_buffer_allocated as i64);
        r.bulk(b"send-buffer-used");
        r.int(l.send_buffer_used as i64);
    }
}

/// CLUSTER INFO's text.
pub fn info_text(st: &State) -> String {
    let assigned = st.assigned();
    let pfail = st.slots_flagged(nflag::PFAIL);
    let fail = st.slots_flagged(nflag::FAIL);
    let my_epoch = match (st.me().flags & nflag::SLAVE != 0, st.me().master.as_deref()) {
        (true, Some(m)) => st.node(m).map_or(0, |n| n.config_epoch),
        _ => st.me().config_epoch,
    };
    let mut o = String::new();
    let mut field = |k: &str, v: &dyn std::fmt::Display| o.push_str(&format!("{k}:{v}\r\n"));
    field("cluster_state", &if st.ok { "ok" } else { "fail" });
    field("cluster_slots_assigned", &assigned);
    field("cluster_slots_ok", &(assigned - pfail - fail));
    field("cluster_slots_pfail", &pfail);
    field("cluster_slots_fail", &fail);
    field("cluster_known_nodes", &st.nodes.len());
    field("cluster_size", &st.size);
    field("cluster_current_epoch", &st.current_epoch);
    field("cluster_my_epoch", &my_epoch);
    let bus = super::bus::view();
    let mut counters = |dir: &str, counts: &[u64]| {
        for (name, n) in super::bus::msg::mtype::NAMES.iter().zip(counts) {
            if *n > 0 {
                o.push_str(&format!("cluster_stats_messages_{name}_{dir}:{n}\r\n"));
            }
        }
        o.push_str(&format!(
            "cluster_stats_messages_{dir}:{}\r\n",
            counts.iter().sum::<u64>()
        ));
    };
    counters("sent", &bus.sent);
    counters("received", &bus.received);
    o.push_str("total_cluster_links_buffer_limit_exceeded:0\r\n");
    o
}

/// One node in CLUSTER SLOTS: ip, port, id and the (empty) metadata map, or the hostname.
fn slot_node(n: &Node, r: &mut Reply) {
    r.array(4);
    r.bulk(n.ip.as_bytes());
    r.int(n.port as i64);
    r.bulk(n.id.as_bytes());
    if n.hostname.is_empty() {
        r.map(0);
    } else {
        r.map(1);
        r.bulk(b"hostname");
        r.bulk(n.hostname.as_bytes());
    }
}

/// The replicas of the node at `index`.
fn replicas_of(st: &State, index: usize) -> Vec<&Node> {
    let id = &st.nodes[index].id;
    st.nodes
        .iter()
        .filter(|n| n.flags & nflag::SLAVE != 0 && n.master.as_deref() == Some(id.as_str()))
        .collect()
}

/// CLUSTER SLOTS: each run of slots with one owner, in slot order, with its master and replicas.
fn slots_reply(st: &State, r: &mut Reply) {
    let mut runs: Vec<(u16, u16, usize)> = Vec::new();
    for s in 0..SLOTS as u16 {
        let Some(owner) = st.owner_index(s) else {
            continue;
        };
        match runs.last_mut() {
            Some(last) if last.2 == owner && last.1 + 1 == s => last.1 = s,
            _ => runs.push((s, s, owner)),
        }
    }
    r.array(runs.len());
    for (a, b, owner) in runs {
        let replicas = replicas_of(st, owner);
        let replicas: Vec<&Node> = replicas
            .into_iter()
            .filter(|n| n.flags & nflag::FAIL == 0)
            .collect();
        r.array(3 + replicas.len());
        r.int(a as i64);
        r.int(b as i64);
        slot_node(&st.nodes[owner], r);
        for n in replicas {
            slot_node(n, r);
        }
    }
}

/// One node in CLUSTER SHARDS.
fn shard_node(n: &Node, r: &mut Reply) {
    let fields = if n.hostname.is_empty() { 7 } else { 8 };
    r.map(fields);
    r.bulk(b"id");
    r.bulk(n.id.as_bytes());
    r.bulk(b"port");
    r.int(n.port as i64);
    r.bulk(b"ip");
    r.bulk(n.ip.as_bytes());
    r.bulk(b"endpoint");
    r.bulk(n.ip.as_bytes());
    if !n.hostname.is_empty() {
        r.bulk(b"hostname");
        r.bulk(n.hostname.as_bytes());
    }
    r.bulk(b"role");
    r.bulk(if n.is_master() {
        b"master" as &[u8]
    } else {
        b"replica"
    });
    r.bulk(b"replication-offset");
    r.int(0);
    r.bulk(b"health");
    r.bulk(if n.flags & nflag::FAIL != 0 {
        b"fail" as &[u8]
    } else {
        b"online"
    });
}

/// CLUSTER SHARDS: one entry per master (with its replicas) and its slot ranges.
fn shards_reply(st: &State, r: &mut Reply) {
    let masters: Vec<usize> = (0..st.nodes.len())
        .filter(|&i| st.nodes[i].is_master() && st.nodes[i].flags & nflag::HANDSHAKE == 0)
        .collect();
    r.array(masters.len());
    for i in masters {
        r.map(2);
        r.bulk(b"slots");
        let ranges = st.ranges_of(i);
        r.array(ranges.len() * 2);
        for (a, b) in ranges {
            r.int(a as i64);
            r.int(b as i64);
        }
        r.bulk(b"nodes");
        let replicas = replicas_of(st, i);
        r.array(1 + replicas.len());
        shard_node(&st.nodes[i], r);
        for n in replicas {
            shard_node(n, r);
        }
    }
}

/// CLUSTER REPLICAS|SLAVES node-id: the replicas' CLUSTER NODES lines.
fn replicas(cluster: &Cluster, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let st = cluster.state();
    let id = String::from_utf8_lossy(argv[2]);
    let Some(index) = st.find(&id) else {
        return Err(unknown_node(&id));
    };
    if !st.nodes[index].is_master() {
        return Err(Error::err("The specified node is not a master"));
    }
    let master_id = st.nodes[index].id.clone();
    let lines: Vec<String> = (0..st.nodes.len())
        .filter(|&i| {
            st.nodes[i].flags & nflag::SLAVE != 0
                && st.nodes[i].master.as_deref() == Some(master_id.as_str())
        })
        .map(|i| st.node_line(i))
        .collect();
    let mut r = conn.reply();
    r.array(lines.len());
    for l in lines {
        r.bulk(l.as_bytes());
    }
    Ok(())
}

/// A slot argument of an admin subcommand.
fn slot_arg(arg: &[u8]) -> Result<u16, Error> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(parse_slot)
        .ok_or_else(|| Error::err("Invalid or out of range slot"))
}

/// The slots ADDSLOTS/DELSLOTS (or their RANGE forms) name, checked in Redis's order: each
/// argument parses, each range is ordered, then per slot: already busy (add) / already
/// unassigned (del), then named twice.
pub fn parse_slot_args(
    st: &State,
    args: &[&[u8]],
    add: bool,
    ranges: bool,
) -> Result<Vec<u16>, Error> {
    let mut marked = vec![false; SLOTS];
    let mut out = Vec::new();
    let step = if ranges { 2 } else { 1 };
    for pair in args.chunks(step) {
        let (a, b) = match pair {
            [one] => {
                let s = slot_arg(one)?;
                (s, s)
            }
            [a, b] => {
                let (a, b) = (slot_arg(a)?, slot_arg(b)?);
                if a > b {
                    return Err(Error::err(format!(
                        "start slot number {a} is greater than end slot number {b}"
                    )));
                }
                (a, b)
            }
            _ => return Err(Error::Syntax),
        };
        for s in a..=b {
            if !add && st.owner_index(s).is_none() {
                return Err(Error::err(format!("Slot {s} is already unassigned")));
            }
            if add && st.owner_index(s).is_some() {
                return Err(Error::err(format!("Slot {s} is already busy")));
            }
            if std::mem::replace(&mut marked[s as usize], true) {
                return Err(Error::err(format!("Slot {s} specified multiple times")));
            }
            out.push(s);
        }
    }
    Ok(out)
}

/// ADDSLOTS, DELSLOTS, ADDSLOTSRANGE, DELSLOTSRANGE.
fn slots_change(
    cluster: &Cluster,
    conn: &mut Conn,
    argv: &[&[u8]],
    add: bool,
    ranges: bool,
) -> Result<(), Error> {
    if ranges && argv.len() % 2 == 1 {
        let name = if add {
            "addslotsrange"
        } else {
            "delslotsrange"
        };
        return Err(Error::WrongArity(format!("cluster|{name}")));
    }
    cluster.change(|st| {
        let slots = parse_slot_args(st, &argv[2..], add, ranges)?;
        for s in slots {
            if add {
                // This node now owns it for real: it is no longer being imported.
                st.importing.remove(&s);
                st.assign(s, Some(0));
            } else {
                st.assign(s, None);
            }
        }
        Ok::<(), Error>(())
    })?;
    conn.reply().ok();
    Ok(())
}

/// CLUSTER SETSLOT slot IMPORTING|MIGRATING|NODE node-id, or STABLE.
fn setslot(
    ctx: &ShardCtx,
    cluster: &Cluster,
    conn: &mut Conn,
    argv: &[&[u8]],
) -> Result<(), Error> {
    let st = cluster.state();
    if st.me().flags & nflag::SLAVE != 0 {
        return Err(Error::err("Please use SETSLOT only with masters."));
    }
    let slot = slot_arg(argv[2])?;
    let action = argv[3];
    let id = argv.get(4).map(|a| String::from_utf8_lossy(a).into_owned());
    let bad =
        || Error::err("Invalid CLUSTER SETSLOT action or number of arguments. Try CLUSTER HELP");
    match (argv.len(), id) {
        (5, Some(id)) if eq_ic(action, "migrating") || eq_ic(action, "importing") => {
            let migrating = eq_ic(action, "migrating");
            cluster.change(|st| {
                if migrating && !st.mine(slot) {
                    return Err(Error::err(format!("I'm not the owner of hash slot {slot}")));
                }
                if !migrating && st.mine(slot) {
                    return Err(Error::err(format!(
                        "I'm already the owner of hash slot {slot}"
                    )));
                }
                let Some(n) = st.node(&id) else {
                    return Err(Error::err(format!("I don't know about node {id}")));
                };
                if n.flags & nflag::SLAVE != 0 {
                    return Err(Error::err("Target node is not a master"));
                }
                if migrating {
                    st.migrating.insert(slot, id);
                } else {
                    st.importing.insert(slot, id);
                }
                Ok(())
            })?;
            conn.reply().ok();
            Ok(())
        }
        (4, None) if eq_ic(action, "stable") => {
            cluster.change(|st| {
                st.migrating.remove(&slot);
                st.importing.remove(&slot);
                Ok::<(), Error>(())
            })?;
            conn.reply().ok();
            Ok(())
        }
        (5, Some(id)) if eq_ic(action, "node") => {
            let Some(n) = st.node(&id) else {
                return Err(unknown_node(&id));
            };
            if n.flags & nflag::SLAVE != 0 {
                return Err(Error::err(format!(
                    "Can't assign hashslot {slot} to a replica node"
                )));
            }
            // Whether this node still holds keys of the slot decides the rest.
            slot_keys(
                ctx,
                conn,
                (slot, None),
                Box::new(move |_, conn, results| {
                    let keys = RepBody::count_sum(&results);
                    let r = super::get().map(|c| {
                        c.change(|st| setslot_node(st, slot, &id, keys))
                            .map_err(|e: Error| e.text().trim_start_matches('-').to_string())
                    });
                    match r {
                        Some(Ok(())) => conn.reply().ok(),
                        Some(Err(e)) => conn.error(&e),
                        None => conn.error(&Error::err(DISABLED).text()),
                    }
                }),
            );
            Ok(())
        }
        _ => Err(bad()),
    }
}

/// SETSLOT NODE, once the count of this node's keys in the slot is known.
fn setslot_node(st: &mut State, slot: u16, id: &str, keys: i64) -> Result<(), Error> {
    let Some(index) = st.find(id) else {
        return Err(unknown_node(id));
    };
    if st.mine(slot) && index != 0 && keys != 0 {
        return Err(Error::err(format!(
            "Can't assign hashslot {slot} to a different node while I still hold keys for this hash slot."
        )));
    }
    if keys == 0 {
        st.migrating.remove(&slot);
    }
    st.assign(slot, Some(index));
    if index == 0 && st.importing.remove(&slot).is_some() {
        // Moved by hand: a new epoch, so the new owner wins once the bus spreads it.
        st.bump_epoch();
    }
    Ok(())
}

/// COUNTKEYSINSLOT slot.
fn count_keys(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let slot = parse_i64(argv[2]).ok_or(Error::NotInteger)?;
    if !(0..SLOTS as i64).contains(&slot) {
        return Err(Error::err("Invalid slot"));
    }
    slot_keys(
        ctx,
        conn,
        (slot as u16, None),
        Box::new(|_, conn, results| conn.reply().int(RepBody::count_sum(&results))),
    );
    Ok(())
}

/// Asks the shard that holds `slot`'s keys for them (their count, or up to `limit` names);
/// `done` gets its answer.
fn slot_keys(
    ctx: &ShardCtx,
    conn: &mut Conn,
    (slot, limit): (u16, Option<usize>),
    done: crate::conn::Done,
) {
    let body = ReqBody::ClusterKeys {
        slot: Some(slot),
        limit,
    };
    crate::dispatch::fan_out(ctx, conn, vec![(slot as usize % ctx.n, body)], done);
}

/// GETKEYSINSLOT slot count.
fn get_keys(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let slot = parse_i64(argv[2]).ok_or(Error::NotInteger)?;
    let count = parse_i64(argv[3]).ok_or(Error::NotInteger)?;
    if count < 0 || !(0..SLOTS as i64).contains(&slot) {
        return Err(Error::err("Invalid slot or number of keys"));
    }
    let limit = Some(usize::try_from(count).unwrap_or(usize::MAX));
    slot_keys(
        ctx,
        conn,
        (slot as u16, limit),
        Box::new(|_, conn, results| {
            let names = results
                .into_iter()
                .find_map(|(_, b)| match b {
                    RepBody::Names(n) => Some(n),
                    _ => None,
                })
                .unwrap_or_default();
            let mut r = conn.reply();
            r.array(names.len());
            for n in names {
                r.bulk(&n);
            }
        }),
    );
    Ok(())
}

/// The shard side of COUNTKEYSINSLOT / GETKEYSINSLOT / the empty-database checks, from the
/// database's per-slot index (built on the first call).
pub fn keys_here(ctx: &ShardCtx, slot: Option<u16>, limit: Option<usize>) -> RepBody {
    let mut e = ctx.engine.borrow_mut();
    let Some(db) = e.dbs.first_mut() else {
        return RepBody::Count(0);
    };
    match (slot, limit) {
        (None, _) => RepBody::Count(db.len() as i64),
        (Some(slot), None) => RepBody::Count(db.count_in_slot(slot) as i64),
        (Some(slot), Some(max)) => RepBody::Names(
            db.keys_in_slot(slot, max)
                .into_iter()
                .map(|k| k.to_vec())
                .collect(),
        ),
    }
}

/// Runs `then` if database 0 is empty on every shard, else answers `error`.
fn when_db_empty(
    ctx: &ShardCtx,
    conn: &mut Conn,
    error: &'static str,
    then: impl FnOnce(&mut Conn) + 'static,
) -> Result<(), Error> {
    let parts = (0..ctx.n)
        .map(|s| {
            (
                s,
                ReqBody::ClusterKeys {
                    slot: None,
                    limit: None,
                },
            )
        })
        .collect();
    crate::dispatch::fan_out(
        ctx,
        conn,
        parts,
        Box::new(move |_, conn, results| {
            if RepBody::count_sum(&results) != 0 {
                conn.error(&Error::err(error).text());
            } else {
                then(conn);
            }
        }),
    );
    Ok(())
}

/// CLUSTER RESET [HARD|SOFT].
fn reset(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let hard = match argv.get(2) {
        None => false,
        Some(a) if eq_ic(a, "hard") => true,
        Some(a) if eq_ic(a, "soft") => false,
        Some(_) => return Err(Error::Syntax),
    };
    if argv.len() > 3 {
        return Err(Error::Syntax);
    }
    let shared = ctx.shared.clone();
    when_db_empty(
        ctx,
        conn,
        "CLUSTER RESET can't be called with master nodes containing keys",
        move |conn| {
            // A replica stops replicating and becomes a master, as in Redis.
            if let Some(link) = shared.repl.link() {
                link.request_promotion();
            }
            let r = super::get().map(|c| {
                c.change(|st| {
                    let me = st.me().clone();
                    let mut fresh = State::new(me.id.clone(), me.port, me.cport);
                    fresh.me_mut().ip = me.ip;
                    fresh.me_mut().hostname = me.hostname;
                    if hard {
                        fresh.me_mut().id = super::state::random_id();
                    } else {
                        fresh.current_epoch = st.current_epoch;
                        fresh.last_vote_epoch = st.last_vote_epoch;
                        fresh.me_mut().config_epoch = me.config_epoch;
                    }
                    *st = fresh;
                    Ok::<(), String>(())
                })
            });
            reply_changed(conn, r);
        },
    )
}

/// CLUSTER SET-CONFIG-EPOCH epoch.
fn set_config_epoch(cluster: &Cluster, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let epoch = parse_i64(argv[2]).ok_or(Error::NotInteger)?;
    if epoch < 0 {
        return Err(Error::err(format!(
            "Invalid config epoch specified: {epoch}"
        )));
    }
    cluster.change(|st| {
        if st.nodes.len() > 1 {
            return Err(Error::err(
                "The user can assign a config epoch only when the node does not know any other node.",
            ));
        }
        if st.me().config_epoch != 0 {
            return Err(Error::err("Node config epoch is already non-zero"));
        }
        st.me_mut().config_epoch = epoch as u64;
        st.current_epoch = st.current_epoch.max(epoch as u64);
        Ok(())
    })?;
    conn.reply().ok();
    Ok(())
}

/// CLUSTER FORGET node-id.
fn forget(cluster: &Cluster, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let id = String::from_utf8_lossy(argv[2]).into_owned();
    cluster.change(|st| {
        let Some(index) = st.find(&id) else {
            return Err(unknown_node(&id));
        };
        if index == 0 {
            return Err(Error::err("I tried hard but I can't forget myself..."));
        }
        if st.me().flags & nflag::SLAVE != 0 && st.me().master.as_deref() == Some(id.as_str()) {
            return Err(Error::err("Can't forget my master!"));
        }
        st.remove(index);
        // As Redis: the node stays out for a minute, so gossip does not bring it back.
        let until = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + super::bus::BLACKLIST_TTL_S;
        st.blacklist.insert(id.clone(), until);
        Ok(())
    })?;
    conn.reply().ok();
    Ok(())
}

/// CLUSTER MEET ip port [bus-port]. Phase 2 (the bus) does the handshake; for now the node is
/// recorded in handshake state (shown by CLUSTER NODES, never saved, as Redis saves no
/// handshake node) so that the bus can pick it up.
fn meet(cluster: &Cluster, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    if argv.len() > 5 {
        return Err(Error::WrongArity("cluster|meet".into()));
    }
    let text = |a: &[u8]| String::from_utf8_lossy(a).into_owned();
    let ip = text(argv[2]);
    let Some(port) = parse_i64(argv[3]) else {
        return Err(Error::err(format!(
            "Invalid TCP base port specified: {}",
            text(argv[3])
        )));
    };
    let cport = match argv.get(4) {
        None => port.saturating_add(10000),
        Some(a) => parse_i64(a)
            .ok_or_else(|| Error::err(format!("Invalid TCP bus port specified: {}", text(a))))?,
    };
    let valid = |p: i64| (1..=65535).contains(&p);
    let addr = match ip.parse::<std::net::IpAddr>() {
        Ok(addr) if valid(port) && valid(cport) => addr,
        _ => {
            return Err(Error::err(format!(
                "Invalid node address specified: {ip}:{port}"
            )))
        }
    };
    let (port, cport) = (port as u16, cport as u16);
    let ip = addr.to_string();
    cluster.change(|st| {
        let known = st.nodes.iter().any(|n| {
            n.flags & nflag::HANDSHAKE != 0 && n.ip == ip && n.port == port && n.cport == cport
        });
        if !known {
            let id = super::state::random_id();
            st.nodes.push(Node::new(
                id,
                ip,
                port,
                cport,
                nflag::HANDSHAKE | nflag::MEET,
            ));
        }
        Ok::<(), Error>(())
    })?;
    conn.reply().ok();
    Ok(())
}

/// CLUSTER REPLICATE node-id: this node becomes a replica of that master (its slots follow
/// the master's from then on) and replicates from it.
fn replicate(
    ctx: &ShardCtx,
    cluster: &Cluster,
    conn: &mut Conn,
    argv: &[&[u8]],
) -> Result<(), Error> {
    let id = String::from_utf8_lossy(argv[2]).into_owned();
    let addr = cluster.change(|st| {
        let Some(index) = st.find(&id) else {
            return Err(unknown_node(&id));
        };
        if index == 0 {
            return Err(Error::err("Can't replicate myself"));
        }
        if !st.nodes[index].is_master() {
            return Err(Error::err("I can only replicate a master, not a replica."));
        }
        if st.me().is_master() && !st.ranges_of(0).is_empty() {
            return Err(Error::err(
                "To set a master the node must be empty and without assigned slots.",
            ));
        }
        Ok(super::bus::set_master(st, index))
    })?;
    if let Some((ip, port)) = addr {
        let following = ctx
            .shared
            .repl
            .link()
            .is_some_and(|l| l.host == ip && l.port == port);
        if !following {
            super::bus::start_replication(&ctx.shared, ip, port);
        }
    }
    conn.reply().ok();
    Ok(())
}

/// CLUSTER FAILOVER [FORCE|TAKEOVER]: a replica takes its master's place, after the master has
/// paused and the replica caught up (default), without the master (FORCE), or without votes
/// (TAKEOVER). The bus does it; the reply comes at once, as in Redis.
fn failover(cluster: &Cluster, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let (force, takeover) = match argv.get(2) {
        None => (false, false),
        Some(a) if argv.len() == 3 && eq_ic(a, "force") => (true, false),
        Some(a) if argv.len() == 3 && eq_ic(a, "takeover") => (false, true),
        Some(_) => return Err(Error::Syntax),
    };
    let st = cluster.state();
    if st.me().flags & nflag::SLAVE == 0 {
        return Err(Error::err("You should send CLUSTER FAILOVER to a replica"));
    }
    let master = st.me().master.as_deref().and_then(|m| st.node(m));
    let Some(master) = master else {
        return Err(Error::err("I'm a replica but my master is unknown to me"));
    };
    if !force && !takeover && (master.flags & nflag::FAIL != 0 || !master.connected) {
        return Err(Error::err(
            "Master is down or failed, please use CLUSTER FAILOVER FORCE",
        ));
    }
    super::bus::request(super::bus::Request::Failover { force, takeover });
    conn.reply().ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st() -> State {
        let mut st = State::new("a".repeat(40), 1, 2);
        st.assign(5, Some(0));
        st
    }

    fn err(r: Result<Vec<u16>, Error>) -> String {
        match r {
            Err(e) => e.text(),
            Ok(v) => format!("ok {v:?}"),
        }
    }

    #[test]
    fn slot_arguments_are_checked_in_order() {
        let s = st();
        assert_eq!(
            parse_slot_args(&s, &[b"1", b"2"], true, false).ok(),
            Some(vec![1, 2])
        );
        assert_eq!(
            err(parse_slot_args(&s, &[b"5"], true, false)),
            "ERR Slot 5 is already busy"
        );
        assert_eq!(
            err(parse_slot_args(&s, &[b"6"], false, false)),
            "ERR Slot 6 is already unassigned"
        );
        assert_eq!(
            err(parse_slot_args(&s, &[b"1", b"1"], true, false)),
            "ERR Slot 1 specified multiple times"
        );
        for bad in [&b"16384"[..], b"-1", b"x", b""] {
            assert_eq!(
                err(parse_slot_args(&s, &[bad], true, false)),
                "ERR Invalid or out of range slot"
            );
        }
        assert_eq!(
            parse_slot_args(&s, &[b"0", b"3", b"10", b"10"], true, true).ok(),
            Some(vec![0, 1, 2, 3, 10])
        );
        assert_eq!(
            err(parse_slot_args(&s, &[b"9", b"3"], true, true)),
            "ERR start slot number 9 is greater than end slot number 3"
        );
        assert_eq!(
            err(parse_slot_args(&s, &[b"0", b"3", b"2", b"4"], true, true)),
            "ERR Slot 2 specified multiple times"
        );
    }

    #[test]
    fn info_lists_redis_fields() {
        let text = info_text(&st());
        let names: Vec<&str> = text.lines().filter_map(|l| l.split(':').next()).collect();
        assert_eq!(names[0], "cluster_state");
        assert!(names.contains(&"cluster_stats_messages_sent"));
        assert!(text.contains("cluster_slots_assigned:1\r\n"));
    }

    #[test]
    fn local_ip_strips_the_port() {
        assert_eq!(local_ip("127.0.0.1:6379"), "127.0.0.1");
        assert_eq!(local_ip("[::1]:6379"), "::1");
    }
}
