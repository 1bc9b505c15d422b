//! The redirection check every command passes in cluster mode, Redis 7.0's `getNodeByQuery`
//! and `clusterRedirectClient`: all keys in one slot (else CROSSSLOT), a slot nobody serves
//! (CLUSTERDOWN Hash slot not served), the cluster down (CLUSTERDOWN, reads allowed with
//! `cluster-allow-reads-when-down`), a slot being migrated away whose keys are missing here
//! (ASK, or TRYAGAIN for several keys), a slot being imported (served only after ASKING), and
//! a slot another node serves (MOVED). EXEC checks every queued command as one request.
//!
//! Whether a key exists matters only for a slot in migration. The key lives on the shard that
//! owns its slot; when that is another shard, the connection asks it first ([`Verdict::Probe`])
//! and the check runs again with the answer (`Conn::cluster_missing`).

use crate::conn::Conn;
use crate::ctx::ShardCtx;
use shards::cmd::{flag, key_positions, lookup, Lookup};
use shards::keyspace::Key;
use shards::slot::key_slot;
use smallvec::SmallVec;

/// What the check decided.
pub enum Verdict {
    /// Run the command here.
    Serve,
    /// Refuse it with this error (full text, without the leading `-`).
    Refuse(String),
    /// Ask this shard how many of these keys are missing, then check again.
    Probe(usize, Vec<Key>),
}

pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";
pub const TRYAGAIN: &str = "TRYAGAIN Multiple keys request during rehashing of slot";
pub const DOWN: &str = "CLUSTERDOWN The cluster is down";
pub const DOWN_RO: &str = "CLUSTERDOWN The cluster is down and only accepts read commands";
pub const UNBOUND: &str = "CLUSTERDOWN Hash slot not served";

/// One command of a request: its lookup and arguments.
type Command<'a> = (Lookup, &'a [&'a [u8]]);

/// Whether a command takes part in the check at all: Redis skips commands without key specs
/// (other than EXEC), whatever their arguments.
fn has_keys(l: Lookup) -> bool {
    l.spec.flags & flag::MOVABLE_KEYS != 0
        || !l.spec.keys.is_empty()
        || l.spec.getkeys.is_some()
        || l.spec.name == "exec"
        || is_shard_pubsub(l)
}

/// SSUBSCRIBE, SUNSUBSCRIBE and SPUBLISH route by their channels' slots.
fn is_shard_pubsub(l: Lookup) -> bool {
    matches!(l.spec.name, "ssubscribe" | "sunsubscribe" | "spublish")
}

/// The positions of the arguments the check hashes.
fn positions(l: Lookup, argv: &[&[u8]], out: &mut Vec<usize>) {
    match l.spec.name {
        "spublish" => {
            out.clear();
            if argv.len() > 1 {
                out.push(1);
            }
        }
        "ssubscribe" | "sunsubscribe" => {
            out.clear();
            out.extend(1..argv.len());
        }
        _ => key_positions(l.spec, argv, out),
    }
}

/// Decides whether this node serves the command (see the module doc).
pub fn check(ctx: &ShardCtx, conn: &mut Conn, l: Lookup, argv: &[&[u8]]) -> Verdict {
    let Some(cluster) = super::get().filter(|c| c.mode == super::Mode::On) else {
        return Verdict::Serve;
    };
    // A block run live (see `crate::multi`) was checked as a whole at EXEC; Redis does not
    // check its commands again as they run.
    if conn.master_link || conn.live.is_some() || !has_keys(l) {
        return Verdict::Serve;
    }
    cluster.with_state(|cluster, st| decide(ctx, conn, cluster, st, l, argv))
}

/// [`check`] past the cheap exits, against one state.
fn decide(
    ctx: &ShardCtx,
    conn: &mut Conn,
    cluster: &super::Cluster,
    st: &super::state::State,
    l: Lookup,
    argv: &[&[u8]],
) -> Verdict {
    let owned: Vec<Vec<Vec<u8>>>;
    let queued: Vec<Vec<&[u8]>>;
    let commands: SmallVec<[Command<'_>; 1]> = if l.spec.name == "exec" {
        let Some(m) = conn.multi.as_ref() else {
            return Verdict::Serve;
        };
        owned = m.queued.clone();
        queued = owned
            .iter()
            .map(|c| c.iter().map(|a| a.as_slice()).collect())
            .collect();
        queued
            .iter()
            .filter_map(|argv| lookup(argv).ok().map(|l| (l, argv.as_slice())))
            .collect()
    } else {
        smallvec::smallvec![(l, argv)]
    };
    let pubsub = is_shard_pubsub(l);
    let mut write = false;
    let mut first: Option<(&[u8], u16)> = None;
    let mut multiple = false;
    let mut keys: SmallVec<[&[u8]; 8]> = SmallVec::new();
    let mut pos = Vec::new();
    for (cl, cargv) in &commands {
        write |= (cl.spec.flags | cl.parent.map_or(0, |p| p.flags)) & flag::WRITE != 0;
        positions(*cl, cargv, &mut pos);
        for &p in &pos {
            let Some(&key) = cargv.get(p) else { continue };
            let slot = key_slot(key).0;
            match first {
                None => {
                    if st.owner(slot).is_none() {
                        return Verdict::Refuse(UNBOUND.into());
                    }
                    first = Some((key, slot));
                }
                Some((k, s)) if k != key => {
                    if s != slot {
                        return Verdict::Refuse(CROSSSLOT.into());
                    }
                    multiple = true;
                }
                Some(_) => {}
            }
            keys.push(key);
        }
    }
    let Some((_, slot)) = first else {
        // No key at all: served whatever the state of the cluster.
        return Verdict::Serve;
    };
    if !st.ok {
        if pubsub {
            if !cluster.pubsubshard_when_down() {
                return Verdict::Refuse(DOWN.into());
            }
        } else if !cluster.reads_when_down() {
            return Verdict::Refuse(DOWN.into());
        } else if write {
            return Verdict::Refuse(DOWN_RO.into());
        }
    }
    let mine = st.mine(slot);
    let migrating = mine && st.migrating.contains_key(&slot);
    let importing = !migrating && st.importing.contains_key(&slot);
    if (migrating || importing) && l.spec.name == "migrate" {
        return Verdict::Serve;
    }
    let asking = conn.asking || l.spec.flags & flag::ASKING != 0;
    let missing = if (migrating || (importing && asking)) && !pubsub {
        match count_missing(ctx, conn, &keys) {
            Ok(n) => n,
            Err(probe) => return probe,
        }
    } else {
        0
    };
    if migrating && missing > 0 {
        if multiple {
            return Verdict::Refuse(TRYAGAIN.into());
        }
        return match st.migrating.get(&slot).and_then(|id| st.node(id)) {
            Some(n) => Verdict::Refuse(format!("ASK {slot} {}:{}", endpoint(&n.ip), n.port)),
            None => Verdict::Serve,
        };
    }
    if importing && asking {
        if multiple && missing > 0 {
            return Verdict::Refuse(TRYAGAIN.into());
        }
        return Verdict::Serve;
    }
    let Some(owner) = st.owner(slot) else {
        return Verdict::Refuse(UNBOUND.into());
    };
    if (conn.cluster_readonly || pubsub)
        && !write
        && st.me().flags & super::state::nflag::SLAVE != 0
        && st.me().master.as_deref() == Some(owner.id.as_str())
    {
        return Verdict::Serve;
    }
    if !mine {
        return Verdict::Refuse(format!(
            "MOVED {slot} {}:{}",
            endpoint(&owner.ip),
            owner.port
        ));
    }
    Verdict::Serve
}

/// How a node's address reads in a redirection: its IP (`cluster-preferred-endpoint-type ip`,
/// Redis's default; empty while unknown, as Redis leaves it).
fn endpoint(ip: &str) -> &str {
    ip
}

/// How many of `keys` (all of one slot) do not exist, counted here when their shard is this
/// one, from a probe's answer otherwise.
fn count_missing(ctx: &ShardCtx, conn: &mut Conn, keys: &[&[u8]]) -> Result<usize, Verdict> {
    let Some(first) = keys.first() else {
        return Ok(0);
    };
    let shard = crate::dispatch::shard_of(ctx, first);
    if shard == ctx.id {
        let now_ms = crate::ctx::now_us() / 1000;
        let e = ctx.engine.borrow();
        let db = e.dbs.first();
        return Ok(keys
            .iter()
            .filter(|k| db.is_none_or(|db| db.peek(k, now_ms).is_none()))
            .count());
    }
    // The answer counts only for the command it was asked for (the same slot and keys).
    let slot = key_slot(first).0;
    match conn.cluster_missing.take() {
        Some((s, n, missing)) if s == slot && n == keys.len() => Ok(missing),
        _ => Err(Verdict::Probe(
            shard,
            keys.iter().map(|k| Key::from(*k)).collect(),
        )),
    }
}

/// The probe's shard side: how many of these keys of database 0 are missing here.
pub fn missing_here(ctx: &ShardCtx, keys: &[Key]) -> i64 {
    let now_ms = crate::ctx::now_us() / 1000;
    let e = ctx.engine.borrow();
    let Some(db) = e.dbs.first() else {
        return keys.len() as i64;
    };
    keys.iter().filter(|k| db.peek(k, now_ms).is_none()).count() as i64
}

/// Starts a probe: the connection waits for the answer, then routes the command again.
pub fn probe(ctx: &ShardCtx, conn: &mut Conn, shard: usize, keys: Vec<Key>) {
    let slot = keys.first().map_or(0, |k| key_slot(k).0);
    let n = keys.len();
    crate::dispatch::fan_out(
        ctx,
        conn,
        vec![(shard, crate::msg::ReqBody::ClusterMissing(keys))],
        Box::new(move |_, conn, results| {
            let missing = crate::msg::RepBody::count_sum(&results).max(0) as usize;
            conn.cluster_missing = Some((slot, n, missing));
        }),
    );
}

/// ASKING lasts for one command (or, inside MULTI, until EXEC), as in Redis.
pub fn after_command(conn: &mut Conn, l: Lookup) {
    let keeps = matches!(l.spec.name, "asking" | "multi");
    if conn.asking && !keeps && (conn.multi.is_none() || l.spec.name == "exec") {
        conn.asking = false;
    }
    conn.cluster_missing = None;
}

/// A script's command on `slot` (see `shards::keyspace::CLUSTER_SLOT_CHECK`): the error Redis's
/// `scriptVerifyClusterState` gives when this node does not serve it. The slot of a migration
/// counts as this node's (a script cannot follow ASK).
pub fn script_slot_check(slot: u16, write: bool) -> Option<&'static str> {
    let cluster = super::get()?;
    const NON_LOCAL: &str = "Script attempted to access a non local key in a cluster node";
    cluster.with_state(|cluster, st| {
        let Some(owner) = st.owner_index(slot) else {
            return Some(NON_LOCAL);
        };
        if !st.ok {
            if !cluster.reads_when_down() {
                return Some("Script attempted to execute a command while the cluster is down");
            }
            if write {
                return Some(
                    "Script attempted to execute a write command while the cluster is down and readonly",
                );
            }
        }
        (owner != 0 && !st.importing.contains_key(&slot)).then_some(NON_LOCAL)
    })
}

thread_local! {
    /// The state generation this shard's blocked clients were last checked against.
    static BLOCKED_SEEN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// After the configuration changed, unblocks this shard's blocked clients whose slot this node
/// no longer serves, with the redirection Redis's `clusterRedirectBlockedClientIfNeeded` gives:
/// CLUSTERDOWN while the cluster is down, for an unassigned slot, or MOVED to the new owner (a
/// slot being imported keeps its clients).
pub fn redirect_blocked(ctx: &ShardCtx) {
    let Some(cluster) = super::get().filter(|c| c.mode == super::Mode::On) else {
        return;
    };
    let generation = cluster.generation();
    if BLOCKED_SEEN.with(|s| s.replace(generation)) == generation {
        return;
    }
    let waiters = ctx.blocked.borrow().first_keys();
    if waiters.is_empty() {
        return;
    }
    let refusals: Vec<(u64, String)> = cluster.with_state(|_, st| {
        waiters
            .into_iter()
            .filter_map(|(id, _, key)| {
                let slot = key_slot(&key).0;
                if !st.ok {
                    return Some((id, DOWN.to_string()));
                }
                if st.mine(slot) || st.importing.contains_key(&slot) {
                    return None;
                }
                Some(match st.owner(slot) {
                    None => (id, UNBOUND.to_string()),
                    Some(n) => (id, format!("MOVED {slot} {}:{}", endpoint(&n.ip), n.port)),
                })
            })
            .collect()
    });
    for (id, text) in refusals {
        ctx.unblock_with(id, format!("-{text}\r\n").into_bytes());
    }
}
