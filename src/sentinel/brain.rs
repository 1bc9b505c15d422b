//! The timer: every 100 ms it checks every instance for SDOWN, every master for ODOWN, asks the
//! other sentinels about masters it sees down, starts failovers and moves them along. It also
//! holds what the links hand over: INFO replies (roles, replicas, promotions) and hello messages
//! (other sentinels, epochs, newer configurations).

use super::state::*;
use std::time::{Duration, Instant};

/// An event to publish once the master being worked on is no longer borrowed.
type Ev = (bool, &'static str, String);

/// The global fields a master's step needs besides the master itself.
struct Cx<'a> {
    epoch: &'a mut u64,
    myid: &'a str,
    events: Vec<Ev>,
    dirty: bool,
    simulate_failure: u32,
    /// Client-reconfig script calls: leader?, state, from, to.
    reconf: Vec<Reconf>,
}

pub fn run() {
    let mut previous = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let mut st = super::lock();
        if st.shutdown {
            return;
        }
        let now = Instant::now();
        check_tilt(&mut st, now.saturating_duration_since(previous));
        previous = now;
        if st.tilt_since.is_none() {
            tick(&mut st);
        }
        super::scripts::run(&mut st);
        super::conf::flush(&mut st);
    }
}

/// TILT mode: when the timer ran late (the process was stopped or starved), what the links
/// measured cannot be trusted, so for TILT-PERIOD the sentinel only watches: no SDOWN, no
/// failover, and it answers "not down" to other sentinels.
fn check_tilt(st: &mut State, since_last_tick: Duration) {
    if since_last_tick > tilt_trigger() {
        if st.tilt_since.is_none() {
            st.event(true, "+tilt", "#tilt mode entered".into());
        }
        st.tilt_since = Some(Instant::now());
        return;
    }
    if st.tilt_since.is_some_and(|t| t.elapsed() > tilt_period()) {
        st.tilt_since = None;
        st.event(true, "-tilt", "#tilt mode exited".into());
    }
}

fn tick(st: &mut State) {
    let names: Vec<String> = st.masters.keys().cloned().collect();
    for name in names {
        let myid = st.myid.clone();
        let mut cx = Cx {
            epoch: &mut st.current_epoch,
            myid: &myid,
            events: Vec::new(),
            dirty: false,
            simulate_failure: st.simulate_failure,
            reconf: Vec::new(),
        };
        let Some(m) = st.masters.get_mut(&name) else {
            continue;
        };
        handle_master(m, &mut cx);
        let (events, dirty, reconf) = (cx.events, cx.dirty, cx.reconf);
        emit(st, events);
        st.config_dirty |= dirty;
        run_reconf(st, &name, reconf);
        let switch = st
            .masters
            .get(&name)
            .is_some_and(|m| m.failover_state == FailoverState::UpdateConfig);
        if switch {
            switch_to_promoted(st, &name);
        }
    }
}

type Reconf = (bool, &'static str, (String, u16), (String, u16));

fn run_reconf(st: &mut State, name: &str, calls: Vec<Reconf>) {
    for (leader, state, from, to) in calls {
        super::scripts::client_reconfig(st, name, leader, state, (&from.0, from.1), (&to.0, to.1));
    }
}

fn emit(st: &mut State, events: Vec<Ev>) {
    for (warn, kind, msg) in events {
        st.event(warn, kind, msg);
        if kind == "+elected-leader" && st.simulate_failure & SIMFAIL_CRASH_AFTER_ELECTION != 0 {
            warn!("Simulated crash after the election");
            std::process::exit(99);
        }
        if kind == "+promoted-slave" && st.simulate_failure & SIMFAIL_CRASH_AFTER_PROMOTION != 0 {
            warn!("Simulated crash after the promotion");
            std::process::exit(99);
        }
    }
}

fn handle_master(m: &mut Master, cx: &mut Cx) {
    let down_after = Duration::from_millis(m.down_after_ms);
    let mut events = Vec::new();
    let at = m.at();
    // A master that rebooted and has not answered PONG since, for longer than
    // master-reboot-down-after-period, is down too.
    let reboot_period = Duration::from_millis(m.master_reboot_down_after_ms);
    let rebooting = m.master_reboot_down_after_ms != 0
        && m.inst
            .master_reboot_since
            .is_some_and(|t| t.elapsed() > reboot_period);
    sdown_apply(&mut m.inst, down_after, &mut events, &at, rebooting);
    for r in m.replicas.values_mut() {
        sdown_apply(r, down_after, &mut events, &at, false);
    }
    for s in m.sentinels.values_mut() {
        sdown_apply(s, down_after, &mut events, &at, false);
    }
    cx.events.extend(events);
    check_odown(m, cx);
    if start_failover_if_needed(m, cx) {
        ask_others(m, cx, true);
    }
    failover_step(m, cx);
    ask_others(m, cx, false);
}

/// Sets or clears SDOWN: no valid PING reply for down-after-milliseconds, or a master that has
/// been reporting itself as a replica for too long.
fn sdown_apply(
    i: &mut Inst,
    down_after: Duration,
    events: &mut Vec<Ev>,
    at: &str,
    rebooting: bool,
) {
    let now = Instant::now();
    let elapsed = match i.link.act_ping_time {
        Some(t) => now.saturating_duration_since(t),
        None if !i.link.connected => now.saturating_duration_since(i.link.last_avail_time),
        None => Duration::ZERO,
    };
    let wrong_role = i.kind == Kind::Master
        && i.role_reported == Role::Slave
        && now.saturating_duration_since(i.role_reported_time)
            > down_after.saturating_add(info_period() * 2);
    let down = elapsed > down_after || wrong_role || rebooting;
    let who = describe_at(i, at);
    if down && !i.s_down() {
        i.s_down_since = Some(now);
        i.last_sdown = Some(now);
        events.push((true, "+sdown", who));
    } else if !down && i.s_down() {
        i.s_down_since = None;
        events.push((true, "-sdown", who));
    }
}

/// `%@` given the master's `name ip port`.
fn describe_at(i: &Inst, at: &str) -> String {
    let t = match i.kind {
        Kind::Master => return format!("master {} {} {}", i.name, i.ip, i.port),
        Kind::Replica => "slave",
        Kind::Sentinel => "sentinel",
    };
    format!("{t} {} {} {} @ {at}", i.name, i.ip, i.port)
}

fn check_odown(m: &mut Master, cx: &mut Cx) {
    let votes = if m.inst.s_down() {
        1 + m.sentinels.values().filter(|s| s.master_down).count() as u32
    } else {
        0
    };
    let odown = m.inst.s_down() && votes >= m.quorum;
    if odown && m.inst.o_down_since.is_none() {
        m.inst.o_down_since = Some(Instant::now());
        let msg = format!("{} #quorum {}/{}", describe(m, &m.inst), votes, m.quorum);
        cx.events.push((true, "+odown", msg));
    } else if !odown && m.inst.o_down_since.is_some() {
        m.inst.o_down_since = None;
        cx.events.push((true, "-odown", describe(m, &m.inst)));
    }
}

/// Asks the other sentinels whether they see the master down (and, during a failover, for
/// their vote).
fn ask_others(m: &mut Master, cx: &mut Cx, forced: bool) {
    let now = Instant::now();
    let (ip, port) = (m.inst.ip.clone(), m.inst.port);
    let runid = if m.failover_in_progress() {
        cx.myid.to_string()
    } else {
        "*".to_string()
    };
    let master_sdown = m.inst.s_down();
    for s in m.sentinels.values_mut() {
        let stale = s
            .last_master_down_reply
            .is_some_and(|t| now.saturating_duration_since(t) > ask_period() * 5);
        if stale {
            s.master_down = false;
            s.leader = None;
            s.last_master_down_reply = None;
        }
        if !master_sdown || !s.link.connected {
            continue;
        }
        let recent =
            |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < ask_period());
        if !forced && (recent(s.ask_sent) || recent(s.last_master_down_reply)) {
            continue;
        }
        s.ask_sent = Some(now);
        let id = s.id;
        let cmd: Vec<Vec<u8>> = vec![
            b"SENTINEL".to_vec(),
            b"is-master-down-by-addr".to_vec(),
            ip.clone().into_bytes(),
            port.to_string().into_bytes(),
            cx.epoch.to_string().into_bytes(),
            runid.clone().into_bytes(),
        ];
        s.queue(
            vec![cmd],
            Some(Box::new(move |st: &mut State, reply| {
                is_master_down_reply(st, id, reply)
            })),
        );
    }
}

fn is_master_down_reply(st: &mut State, id: u64, reply: Result<super::client::Value, String>) {
    use super::client::Value;
    let Ok(Value::Array(items)) = reply else {
        return;
    };
    let (Some(Value::Int(down)), Some(leader), Some(epoch)) = (
        items.first(),
        items.get(1).and_then(|v| v.text()),
        items.get(2).and_then(|v| v.int()),
    ) else {
        return;
    };
    let Some(s) = st.inst_mut(id) else {
        return;
    };
    s.last_master_down_reply = Some(Instant::now());
    s.master_down = *down == 1;
    if leader != "*" {
        s.leader = Some(leader);
        s.leader_epoch = epoch.max(0) as u64;
    }
}

/// Records this sentinel's vote for the leader of `epoch` (at most one vote per epoch) and
/// returns the vote it holds.
pub fn vote_leader(
    m: &mut Master,
    epoch_now: &mut u64,
    myid: &str,
    req_epoch: u64,
    req_runid: &str,
    events: &mut Vec<Ev>,
) -> (Option<String>, u64, bool) {
    let mut dirty = false;
    if req_epoch > *epoch_now {
        *epoch_now = req_epoch;
        dirty = true;
        events.push((true, "+new-epoch", req_epoch.to_string()));
    }
    if m.leader_epoch < req_epoch && *epoch_now <= req_epoch {
        m.leader = Some(req_runid.to_string());
        m.leader_epoch = *epoch_now;
        dirty = true;
        events.push((
            true,
            "+vote-for-leader",
            format!("{req_runid} {}", m.leader_epoch),
        ));
        // Having voted for another sentinel, do not start our own failover for a while.
        if req_runid != myid {
            m.failover_start_time =
                Some(Instant::now() + Duration::from_millis(super::random_ms(1000)));
        }
    }
    (m.leader.clone(), m.leader_epoch, dirty)
}

/// The leader of `epoch` if one has a majority of the known sentinels and at least quorum
/// votes (voting for it, or for ourselves, along the way).
fn get_leader(m: &mut Master, cx: &mut Cx, epoch: u64) -> Option<String> {
    let voters = m.sentinels.len() as u64 + 1;
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for s in m.sentinels.values() {
        if let Some(l) = &s.leader {
            if s.leader_epoch == *cx.epoch {
                *counts.entry(l.clone()).or_default() += 1;
            }
        }
    }
    let best = |counts: &std::collections::BTreeMap<String, u64>| {
        counts
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(k, v)| (k.clone(), *v))
    };
    let candidate = best(&counts)
        .map(|(k, _)| k)
        .unwrap_or_else(|| cx.myid.to_string());
    let (myvote, vote_epoch, dirty) =
        vote_leader(m, cx.epoch, cx.myid, epoch, &candidate, &mut cx.events);
    cx.dirty |= dirty;
    if let Some(v) = myvote {
        if vote_epoch == epoch {
            *counts.entry(v).or_default() += 1;
        }
    }
    let (winner, votes) = best(&counts)?;
    (votes > voters / 2 && votes >= m.quorum as u64).then_some(winner)
}

fn start_failover_if_needed(m: &mut Master, cx: &mut Cx) -> bool {
    if m.inst.o_down_since.is_none() || m.failover_in_progress() {
        return false;
    }
    let now = Instant::now();
    if let Some(t) = m.failover_start_time {
        let wait = Duration::from_millis(m.failover_timeout_ms.saturating_mul(2));
        if t > now || now.duration_since(t) < wait {
            return false;
        }
    }
    start_failover(m, cx);
    true
}

/// Starts a failover of `m` in a new epoch.
pub fn start_failover_events(m: &mut Master, epoch_now: &mut u64, events: &mut Vec<Ev>) {
    *epoch_now = epoch_now.saturating_add(1);
    m.failover_epoch = *epoch_now;
    m.failover_state = FailoverState::WaitStart;
    m.failover_state_change_time = Instant::now();
    m.failover_start_time = Some(Instant::now() + Duration::from_millis(super::random_ms(1000)));
    events.push((true, "+new-epoch", epoch_now.to_string()));
    events.push((true, "+try-failover", describe(m, &m.inst)));
}

fn start_failover(m: &mut Master, cx: &mut Cx) {
    start_failover_events(m, cx.epoch, &mut cx.events);
    cx.dirty = true;
}

fn set_state(m: &mut Master, s: FailoverState) {
    m.failover_state = s;
    m.failover_state_change_time = Instant::now();
}

fn abort_failover(m: &mut Master, cx: &mut Cx, why: &'static str) {
    cx.events.push((true, why, describe(m, &m.inst)));
    m.failover_state = FailoverState::None;
    m.failover_state_change_time = Instant::now();
    m.force_failover = false;
    if let Some(r) = m.promoted.take().and_then(|k| m.replicas.get_mut(&k)) {
        r.promoted = false;
    }
    for r in m.replicas.values_mut() {
        r.reconf_sent = false;
        r.reconf_inprog = false;
        r.reconf_done = false;
    }
}

fn failover_step(m: &mut Master, cx: &mut Cx) {
    let since_change = m.failover_state_change_time.elapsed();
    let timeout = Duration::from_millis(m.failover_timeout_ms);
    match m.failover_state {
        FailoverState::None | FailoverState::UpdateConfig => {}
        FailoverState::WaitStart => {
            let epoch = m.failover_epoch;
            let leader = get_leader(m, cx, epoch);
            let is_leader = leader.as_deref() == Some(cx.myid);
            if !is_leader && !m.force_failover {
                let started = m.failover_start_time.unwrap_or_else(Instant::now);
                let election_timeout = election_timeout().min(timeout);
                if Instant::now().saturating_duration_since(started) > election_timeout {
                    abort_failover(m, cx, "-failover-abort-not-elected");
                }
                return;
            }
            cx.events
                .push((true, "+elected-leader", describe(m, &m.inst)));
            set_state(m, FailoverState::SelectSlave);
            cx.events
                .push((true, "+failover-state-select-slave", describe(m, &m.inst)));
        }
        FailoverState::SelectSlave => match select_slave(m) {
            None => abort_failover(m, cx, "-failover-abort-no-good-slave"),
            Some(key) => {
                if let Some(r) = m.replicas.get_mut(&key) {
                    r.promoted = true;
                }
                m.promoted = Some(key.clone());
                set_state(m, FailoverState::SendSlaveofNoone);
                if let Some(r) = m.replicas.get(&key) {
                    cx.events.push((true, "+selected-slave", describe(m, r)));
                    cx.events
                        .push((false, "+failover-state-send-slaveof-noone", describe(m, r)));
                }
            }
        },
        FailoverState::SendSlaveofNoone => {
            let Some(key) = m.promoted.clone() else {
                return abort_failover(m, cx, "-failover-abort-no-good-slave");
            };
            let connected = m.replicas.get(&key).is_some_and(|r| r.link.connected);
            if !connected {
                if since_change > timeout {
                    abort_failover(m, cx, "-failover-abort-slave-timeout");
                }
                return;
            }
            let cmds = slaveof_cmds(m, None);
            let Some(r) = m.replicas.get_mut(&key) else {
                return;
            };
            r.queue(cmds, None);
            let who = describe(m, m.replicas.get(&key).unwrap_or(&m.inst));
            cx.events
                .push((false, "+failover-state-wait-promotion", who));
            set_state(m, FailoverState::WaitPromotion);
        }
        FailoverState::WaitPromotion => {
            // The promotion itself is seen in the replica's INFO (see `refresh_from_info`).
            if since_change > timeout {
                abort_failover(m, cx, "-failover-abort-slave-timeout");
            }
        }
        FailoverState::ReconfSlaves => {
            reconf_next_slaves(m, cx);
            detect_end(m, cx);
        }
    }
}

/// MULTI / SLAVEOF host port (or NO ONE) / CONFIG REWRITE / CLIENT KILL TYPE normal / EXEC, with
/// the master's renamed commands. A failing CONFIG REWRITE (no config file) does not matter.
fn slaveof_cmds(m: &Master, to: Option<(&str, u16)>) -> Vec<Vec<Vec<u8>>> {
    let (host, port) = match to {
        Some((h, p)) => (h.as_bytes().to_vec(), p.to_string().into_bytes()),
        None => (b"NO".to_vec(), b"ONE".to_vec()),
    };
    vec![
        vec![m.cmd("multi")],
        vec![m.cmd("slaveof"), host, port],
        vec![m.cmd("config"), b"REWRITE".to_vec()],
        vec![
            m.cmd("client"),
            b"KILL".to_vec(),
            b"TYPE".to_vec(),
            b"normal".to_vec(),
        ],
        vec![m.cmd("exec")],
    ]
}

/// The best replica to promote: reachable, recently seen, priority not 0; then lowest priority,
/// highest replication offset, smallest run id.
pub fn select_slave(m: &Master) -> Option<String> {
    let now = Instant::now();
    let mut max_down = Duration::from_millis(m.down_after_ms.saturating_mul(10));
    if let Some(t) = m.inst.s_down_since {
        max_down = max_down.saturating_add(now.saturating_duration_since(t));
    }
    let info_validity = if m.inst.s_down() {
        ping_period() * 5
    } else {
        info_period() * 3
    };
    let mut candidates: Vec<(&String, &Inst)> = m
        .replicas
        .iter()
        .filter(|(_, r)| {
            !r.s_down()
                && r.o_down_since.is_none()
                && r.link.connected
                && now.saturating_duration_since(r.link.last_avail_time) <= ping_period() * 5
                && r.slave_priority != 0
                && r.info_refresh
                    .is_some_and(|t| now.saturating_duration_since(t) <= info_validity)
                && Duration::from_millis(r.master_link_down_time_ms) <= max_down
        })
        .collect();
    candidates.sort_by(|(_, a), (_, b)| {
        a.slave_priority
            .cmp(&b.slave_priority)
            .then(b.repl_offset.cmp(&a.repl_offset))
            .then_with(|| match (a.runid.is_empty(), b.runid.is_empty()) {
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ => a.runid.cmp(&b.runid),
            })
    });
    candidates.first().map(|(k, _)| (*k).clone())
}

/// Points the replicas at the promoted one, at most parallel-syncs at a time.
fn reconf_next_slaves(m: &mut Master, cx: &mut Cx) {
    let Some((ip, port)) = promoted_addr(m) else {
        return;
    };
    let now = Instant::now();
    let mut in_progress = m
        .replicas
        .values()
        .filter(|r| r.reconf_sent || r.reconf_inprog)
        .count() as u32;
    let keys: Vec<String> = m.replicas.keys().cloned().collect();
    for key in keys {
        let cmds = slaveof_cmds(m, Some((&ip, port)));
        let at = m.at();
        let Some(r) = m.replicas.get_mut(&key) else {
            continue;
        };
        if r.promoted || r.reconf_done {
            continue;
        }
        if r.reconf_sent
            && r.reconf_sent_time
                .is_some_and(|t| now.saturating_duration_since(t) > slave_reconf_timeout())
        {
            cx.events
                .push((false, "-slave-reconf-sent-timeout", describe_at(r, &at)));
            r.reconf_sent = false;
            r.reconf_done = true;
            continue;
        }
        if in_progress >= m.parallel_syncs.max(1) {
            break;
        }
        if r.reconf_sent || r.reconf_inprog || !r.link.connected || r.s_down() {
            continue;
        }
        r.queue(cmds, None);
        r.reconf_sent = true;
        r.reconf_sent_time = Some(now);
        in_progress += 1;
        cx.events
            .push((false, "+slave-reconf-sent", describe_at(r, &at)));
    }
}

fn promoted_addr(m: &Master) -> Option<(String, u16)> {
    let r = m.replicas.get(m.promoted.as_ref()?)?;
    Some((r.ip.clone(), r.port))
}

/// Ends the failover when every reachable replica is reconfigured, or on failover-timeout
/// (then the remaining replicas get SLAVEOF anyway).
fn detect_end(m: &mut Master, cx: &mut Cx) {
    let Some((ip, port)) = promoted_addr(m) else {
        return;
    };
    let not_done = m
        .replicas
        .values()
        .filter(|r| !r.promoted && !r.reconf_done && !r.s_down())
        .count();
    let timed_out =
        m.failover_state_change_time.elapsed() > Duration::from_millis(m.failover_timeout_ms);
    if not_done > 0 && !timed_out {
        return;
    }
    if timed_out {
        cx.events
            .push((true, "+failover-end-for-timeout", describe(m, &m.inst)));
    }
    cx.events
        .push((true, "+failover-end", describe(m, &m.inst)));
    set_state(m, FailoverState::UpdateConfig);
    if timed_out {
        let keys: Vec<String> = m.replicas.keys().cloned().collect();
        for key in keys {
            let cmds = slaveof_cmds(m, Some((&ip, port)));
            let at = m.at();
            let Some(r) = m.replicas.get_mut(&key) else {
                continue;
            };
            if r.promoted || r.reconf_done || r.reconf_sent || !r.link.connected {
                continue;
            }
            r.queue(cmds, None);
            r.reconf_sent = true;
            cx.events
                .push((false, "+slave-reconf-sent-be", describe_at(r, &at)));
        }
    }
}

/// The failover is over: the promoted replica becomes the master everybody watches.
fn switch_to_promoted(st: &mut State, name: &str) {
    let Some(m) = st.masters.get(name) else {
        return;
    };
    let Some((ip, port)) = promoted_addr(m) else {
        return;
    };
    let from = (m.inst.ip.clone(), m.inst.port);
    let msg = format!("{name} {} {} {ip} {port}", from.0, from.1);
    st.event(true, "+switch-master", msg);
    super::scripts::client_reconfig(st, name, true, "end", (&from.0, from.1), (&ip, port));
    reset_master(st, name, Some((ip, port)), false);
}

/// Forgets what was learned about a master (its replicas, its failover; its sentinels too
/// unless `keep_sentinels`), optionally moving it to a new address; the old address becomes a
/// replica. New records get new links.
pub fn reset_master(
    st: &mut State,
    name: &str,
    new_addr: Option<(String, u16)>,
    reset_sentinels: bool,
) {
    let mut ids: Vec<u64> = (0..64).map(|_| 0).collect();
    for id in ids.iter_mut() {
        *id = st.new_id();
    }
    let mut ids = ids.into_iter();
    let Some(m) = st.masters.get_mut(name) else {
        return;
    };
    let (old_ip, old_port) = (m.inst.ip.clone(), m.inst.port);
    let (ip, port) = new_addr.clone().unwrap_or((old_ip.clone(), old_port));
    let mut replica_addrs: Vec<(String, u16)> = Vec::new();
    if new_addr.is_some() {
        for r in m.replicas.values() {
            if (r.ip.as_str(), r.port) != (ip.as_str(), port) {
                replica_addrs.push((r.ip.clone(), r.port));
            }
        }
        if (old_ip.as_str(), old_port) != (ip.as_str(), port) {
            replica_addrs.push((old_ip, old_port));
        }
    }
    let mut fresh = Master::new(
        ids.next().unwrap_or_default(),
        name.to_string(),
        ip,
        port,
        m.quorum,
    );
    fresh.down_after_ms = m.down_after_ms;
    fresh.failover_timeout_ms = m.failover_timeout_ms;
    fresh.parallel_syncs = m.parallel_syncs;
    fresh.auth_pass = m.auth_pass.take();
    fresh.auth_user = m.auth_user.take();
    fresh.notification_script = m.notification_script.take();
    fresh.client_reconfig_script = m.client_reconfig_script.take();
    fresh.master_reboot_down_after_ms = m.master_reboot_down_after_ms;
    fresh.config_epoch = m.config_epoch;
    fresh.leader = m.leader.take();
    fresh.leader_epoch = m.leader_epoch;
    fresh.renamed = std::mem::take(&mut m.renamed);
    if new_addr.is_none() {
        fresh.failover_start_time = None;
    }
    if !reset_sentinels {
        fresh.sentinels = std::mem::take(&mut m.sentinels);
        for s in fresh.sentinels.values_mut() {
            s.master_down = false;
            s.leader = None;
            s.leader_epoch = 0;
            s.last_master_down_reply = None;
        }
    }
    let mut events = Vec::new();
    for (rip, rport) in replica_addrs {
        let key = format!("{rip}:{rport}");
        let r = Inst::new(
            ids.next().unwrap_or_default(),
            Kind::Replica,
            key.clone(),
            rip,
            rport,
        );
        events.push(describe(&fresh, &r));
        fresh.replicas.insert(key, r);
    }
    *m = fresh;
    for e in events {
        st.event(false, "+slave", e);
    }
    st.config_dirty = true;
    super::link::spawn_all(st, name);
}

/// Applies an INFO reply from a master or replica.
pub fn refresh_from_info(st: &mut State, id: u64, text: &str) {
    let tilt = st.tilt_since.is_some();
    let mut new_replicas: Vec<(String, u16)> = Vec::new();
    let myid = st.myid.clone();
    let mut cx = Cx {
        epoch: &mut st.current_epoch,
        myid: &myid,
        events: Vec::new(),
        dirty: false,
        simulate_failure: 0,
        reconf: Vec::new(),
    };
    let _ = cx.simulate_failure;
    let Some(m) = st.masters.values_mut().find(|m| m.has(id)) else {
        return;
    };
    let name = m.inst.name.clone();
    apply_info(m, id, text, &mut cx, &mut new_replicas, tilt);
    let (events, dirty, reconf) = (cx.events, cx.dirty, cx.reconf);
    emit(st, events);
    st.config_dirty |= dirty;
    run_reconf(st, &name, reconf);
    if !new_replicas.is_empty() {
        add_replicas(st, &name, new_replicas);
    }
}

fn add_replicas(st: &mut State, name: &str, addrs: Vec<(String, u16)>) {
    for (ip, port) in addrs {
        let id = st.new_id();
        let Some(m) = st.masters.get_mut(name) else {
            return;
        };
        let key = format!("{ip}:{port}");
        if m.replicas.contains_key(&key) {
            continue;
        }
        let r = Inst::new(id, Kind::Replica, key.clone(), ip, port);
        let msg = describe(m, &r);
        m.replicas.insert(key, r);
        st.event(false, "+slave", msg);
        st.config_dirty = true;
        super::link::spawn(id, true);
    }
}

struct InfoFields {
    run_id: Option<String>,
    role: Option<Role>,
    master_host: Option<String>,
    master_port: Option<u16>,
    link_up: Option<bool>,
    link_down_secs: Option<u64>,
    priority: Option<i64>,
    offset: Option<i64>,
    announced: Option<bool>,
    replicas: Vec<(String, u16)>,
}

fn parse_info(text: &str) -> InfoFields {
    let mut f = InfoFields {
        run_id: None,
        role: None,
        master_host: None,
        master_port: None,
        link_up: None,
        link_down_secs: None,
        priority: None,
        offset: None,
        announced: None,
        replicas: Vec::new(),
    };
    for line in text.lines() {
        let Some((k, v)) = line.trim_end().split_once(':') else {
            continue;
        };
        match k {
            "run_id" if v.len() == 40 => f.run_id = Some(v.to_string()),
            "role" => {
                f.role = match v {
                    "master" => Some(Role::Master),
                    "slave" => Some(Role::Slave),
                    _ => None,
                }
            }
            "master_host" => f.master_host = Some(v.to_string()),
            "master_port" => f.master_port = v.parse().ok(),
            "master_link_status" => f.link_up = Some(v == "up"),
            "master_link_down_since_seconds" => f.link_down_secs = v.parse().ok(),
            "slave_priority" | "replica_priority" => f.priority = v.parse().ok(),
            "slave_repl_offset" => f.offset = v.parse().ok(),
            "replica_announced" => f.announced = Some(v != "0"),
            k if k.starts_with("slave") && k[5..].parse::<u32>().is_ok() => {
                let mut ip = None;
                let mut port = None;
                for kv in v.split(',') {
                    match kv.split_once('=') {
                        Some(("ip", x)) => ip = Some(x.to_string()),
                        Some(("port", x)) => port = x.parse::<u16>().ok(),
                        _ => {}
                    }
                }
                if let (Some(ip), Some(port)) = (ip, port) {
                    f.replicas.push((ip, port));
                }
            }
            _ => {}
        }
    }
    f
}

fn looks_sane(m: &Master) -> bool {
    m.inst.role_reported == Role::Master
        && !m.inst.s_down()
        && m.inst.o_down_since.is_none()
        && m.inst
            .info_refresh
            .is_some_and(|t| t.elapsed() < info_period() * 2)
}

fn no_down_for(i: &Inst, d: Duration) -> bool {
    !i.s_down() && i.last_sdown.is_none_or(|t| t.elapsed() > d)
}

fn apply_info(
    m: &mut Master,
    id: u64,
    text: &str,
    cx: &mut Cx,
    new: &mut Vec<(String, u16)>,
    tilt: bool,
) {
    let f = parse_info(text);
    let at = m.at();
    let master_addr = (m.inst.ip.clone(), m.inst.port);
    let track_reboot = m.master_reboot_down_after_ms != 0;
    let Some(i) = m.inst_mut(id) else {
        return;
    };
    let first = i.info_refresh.is_none();
    i.info = text.to_string();
    i.info_refresh = Some(Instant::now());
    if let Some(r) = &f.run_id {
        if !i.runid.is_empty() && i.runid != *r {
            cx.events.push((false, "+reboot", describe_at(i, &at)));
            if i.kind == Kind::Master && track_reboot {
                i.master_reboot_since = Some(Instant::now());
            }
        }
        i.runid = r.clone();
    }
    if let Some(role) = f.role {
        if role != i.role_reported {
            i.role_reported = role;
            i.role_reported_time = Instant::now();
            if !first {
                let name = if role == Role::Master {
                    "master"
                } else {
                    "slave"
                };
                let msg = format!("{} new reported role is {name}", describe_at(i, &at));
                cx.events.push((false, "+role-change", msg));
            }
        }
    }
    if i.kind == Kind::Replica {
        if f.master_host != i.master_host || f.master_port.unwrap_or(0) != i.master_port {
            i.slave_conf_change_time = Instant::now();
        }
        i.master_host = f.master_host.clone();
        i.master_port = f.master_port.unwrap_or(0);
        i.master_link_up = f.link_up.unwrap_or(false);
        i.master_link_down_time_ms = f.link_down_secs.unwrap_or(0).saturating_mul(1000);
        i.slave_priority = f.priority.unwrap_or(100);
        i.repl_offset = f.offset.unwrap_or(0);
        i.replica_announced = f.announced.unwrap_or(true);
    }
    let kind = i.kind;
    if kind == Kind::Master && f.role == Some(Role::Master) {
        for addr in f.replicas {
            let key = format!("{}:{}", addr.0, addr.1);
            if !m.replicas.contains_key(&key) {
                new.push(addr);
            }
        }
        return;
    }
    // In TILT mode roles are recorded but not acted upon.
    if kind != Kind::Replica || tilt {
        return;
    }
    replica_role_checks(m, id, cx, master_addr);
}

/// What a replica's INFO means for the failover: a promotion, a reconfiguration making
/// progress, or a replica that needs to be put back in line.
fn replica_role_checks(m: &mut Master, id: u64, cx: &mut Cx, master_addr: (String, u16)) {
    let wait = Duration::from_millis(m.failover_timeout_ms);
    let sane = looks_sane(m);
    let state = m.failover_state;
    let promoted = promoted_addr(m);
    let at = m.at();
    let back_in_line = slaveof_cmds(m, Some((&master_addr.0, master_addr.1)));
    let Some(r) = m.replicas.values_mut().find(|r| r.id == id) else {
        return;
    };
    // One SLAVEOF per INFO period at most: the instance needs time to act on it.
    let resend_ok = r.slaveof_sent.is_none_or(|t| t.elapsed() > info_period());
    if r.role_reported == Role::Master {
        if r.promoted && state == FailoverState::WaitPromotion {
            let who = describe_at(r, &at);
            m.config_epoch = m.failover_epoch;
            cx.events.push((true, "+promoted-slave", who));
            cx.dirty = true;
            set_state(m, FailoverState::ReconfSlaves);
            cx.events
                .push((true, "+failover-state-reconf-slaves", describe(m, &m.inst)));
            let from = (m.inst.ip.clone(), m.inst.port);
            if let Some(to) = promoted.clone() {
                cx.reconf.push((true, "start", from, to));
            }
            // Tell the other sentinels now rather than at the next hello period.
            m.inst.link.last_pub_time = None;
            for i in m.replicas.values_mut().chain(m.sentinels.values_mut()) {
                i.link.last_pub_time = None;
            }
            return;
        }
        if sane
            && resend_ok
            && no_down_for(r, wait)
            && r.role_reported_time.elapsed() > wait
            && state == FailoverState::None
        {
            r.queue(back_in_line, None);
            r.slaveof_sent = Some(Instant::now());
            cx.events
                .push((false, "+convert-to-slave", describe_at(r, &at)));
        }
        return;
    }
    // A replica of the wrong master.
    let points_at = (r.master_host.clone().unwrap_or_default(), r.master_port);
    if state == FailoverState::None
        && points_at != master_addr
        && sane
        && resend_ok
        && no_down_for(r, wait)
        && r.slave_conf_change_time.elapsed() > wait
    {
        r.queue(back_in_line, None);
        r.slaveof_sent = Some(Instant::now());
        cx.events
            .push((false, "+fix-slave-config", describe_at(r, &at)));
        return;
    }
    // A reconfiguration in progress.
    let Some(promoted) = promoted else {
        return;
    };
    if state != FailoverState::ReconfSlaves {
        return;
    }
    if r.reconf_sent && points_at == promoted {
        r.reconf_sent = false;
        r.reconf_inprog = true;
        cx.events
            .push((false, "+slave-reconf-inprog", describe_at(r, &at)));
    }
    if r.reconf_inprog && r.master_link_up {
        r.reconf_inprog = false;
        r.reconf_done = true;
        cx.events
            .push((false, "+slave-reconf-done", describe_at(r, &at)));
    }
}

/// A parsed hello message.
struct Hello<'a> {
    ip: &'a str,
    port: u16,
    runid: &'a str,
    epoch: u64,
    master: &'a str,
    master_ip: &'a str,
    master_port: u16,
    config_epoch: u64,
}

/// Parses `ip,port,runid,epoch,master,master_ip,master_port,config_epoch`. The id and address
/// go into the config file: only well-formed ones are taken.
fn parse_hello(payload: &str) -> Option<Hello<'_>> {
    let t: Vec<&str> = payload.split(',').collect();
    let [ip, port, runid, epoch, master, master_ip, master_port, config_epoch] = t[..] else {
        return None;
    };
    let well_formed = runid.len() == 40
        && runid.bytes().all(|b| b.is_ascii_hexdigit())
        && !ip.is_empty()
        && ip.bytes().all(|b| b.is_ascii_graphic());
    well_formed.then_some(())?;
    Some(Hello {
        ip,
        port: port.parse().ok()?,
        runid,
        epoch: epoch.parse().ok()?,
        master,
        master_ip,
        master_port: master_port.parse().ok()?,
        config_epoch: config_epoch.parse().ok()?,
    })
}

/// Applies a hello message heard on an instance's hello channel or PUBLISHed to this sentinel:
/// a new epoch, a new (or moved) sentinel, a newer configuration of the master.
pub fn process_hello(st: &mut State, payload: &str) {
    let Some(h) = parse_hello(payload) else {
        return;
    };
    if h.runid == st.myid || !st.masters.contains_key(h.master) {
        return;
    }
    let new_id = st.new_id();
    let mut events: Vec<Ev> = Vec::new();
    if h.epoch > st.current_epoch {
        st.current_epoch = h.epoch;
        st.config_dirty = true;
        events.push((true, "+new-epoch", h.epoch.to_string()));
    }
    let Some(m) = st.masters.get_mut(h.master) else {
        return;
    };
    let spawned = learn_sentinel(m, &h, new_id, &mut events);
    let mut switch = None;
    if m.config_epoch < h.config_epoch {
        m.config_epoch = h.config_epoch;
        st.config_dirty = true;
        let from = (m.inst.ip.clone(), m.inst.port);
        if (from.0.as_str(), from.1) != (h.master_ip, h.master_port) {
            if let Some(s) = m.sentinels.get(h.runid) {
                events.push((true, "+config-update-from", describe(m, s)));
            }
            let to = (h.master_ip.to_string(), h.master_port);
            let msg = format!("{} {} {} {} {}", h.master, from.0, from.1, to.0, to.1);
            events.push((true, "+switch-master", msg));
            switch = Some((from, to));
        }
    }
    for (w, k, msg) in events {
        st.event(w, k, msg);
    }
    if spawned {
        st.config_dirty = true;
        super::link::spawn(new_id, false);
    }
    if let Some((from, to)) = switch {
        reset_master(st, h.master, Some(to.clone()), false);
        let (from, to) = ((from.0.as_str(), from.1), (to.0.as_str(), to.1));
        super::scripts::client_reconfig(st, h.master, false, "start", from, to);
    }
}

/// Records the hello's sender as one of `m`'s sentinels (replacing a record with its id or its
/// address); true when a new record (with link id `new_id`) needs its link.
fn learn_sentinel(m: &mut Master, h: &Hello, new_id: u64, events: &mut Vec<Ev>) -> bool {
    let known = m
        .sentinels
        .get(h.runid)
        .is_some_and(|s| s.ip == h.ip && s.port == h.port);
    if known {
        if let Some(s) = m.sentinels.get_mut(h.runid) {
            s.last_hello_time = Instant::now();
        }
        return false;
    }
    // A sentinel that changed address, or another one taking over an address.
    let before = m.sentinels.len();
    m.sentinels
        .retain(|k, s| k != h.runid && !(s.ip == h.ip && s.port == h.port));
    if m.sentinels.len() != before {
        let msg = format!(
            "{} #duplicate of {}:{} or {}",
            describe(m, &m.inst),
            h.ip,
            h.port,
            h.runid
        );
        events.push((false, "-dup-sentinel", msg));
    }
    let mut s = Inst::new(
        new_id,
        Kind::Sentinel,
        h.runid.to_string(),
        h.ip.to_string(),
        h.port,
    );
    s.runid = h.runid.to_string();
    events.push((false, "+sentinel", describe(m, &s)));
    m.sentinels.insert(h.runid.to_string(), s);
    true
}
