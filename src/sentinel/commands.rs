//! The SENTINEL subcommands: one table names each with its arity and handler; the handlers
//! run with the state locked and answer with Redis 7.0's replies and errors.

use super::brain;
use super::state::*;
use shards::resp::Reply;

fn lower(a: &[u8]) -> String {
    String::from_utf8_lossy(a).to_ascii_lowercase()
}

fn text(a: &[u8]) -> String {
    String::from_utf8_lossy(a).into_owned()
}

fn arity_ok(arity: i32, argc: usize) -> bool {
    super::server::arity_ok(arity, argc)
}

fn no_master(r: &mut Reply) {
    r.error("ERR No such master with that name");
}

/// One SENTINEL subcommand: its name, arity (counting SENTINEL and the subcommand, negative
/// for "at least") and handler, which runs with the state locked.
struct SubCommand {
    name: &'static str,
    arity: i32,
    run: fn(&mut State, &[Vec<u8>], &mut Reply),
}

const fn sub(
    name: &'static str,
    arity: i32,
    run: fn(&mut State, &[Vec<u8>], &mut Reply),
) -> SubCommand {
    SubCommand { name, arity, run }
}

/// The SENTINEL subcommands.
const SUBCOMMANDS: &[SubCommand] = &[
    sub("ckquorum", 3, |st, a, r| ckquorum(st, &text(&a[2]), r)),
    sub("config", -4, config),
    sub("debug", -2, debug),
    sub("failover", 3, |st, a, r| failover(st, &text(&a[2]), r)),
    sub("flushconfig", 2, flushconfig),
    sub("get-master-addr-by-name", 3, get_master_addr),
    sub("help", 2, |_, _, r| help(r)),
    sub("info-cache", -3, info_cache),
    sub("is-master-down-by-addr", 6, is_master_down),
    sub("master", 3, master),
    sub("masters", 2, masters),
    sub("monitor", 6, monitor),
    sub("myid", 2, |st, _, r| r.bulk(st.myid.as_bytes())),
    sub("pending-scripts", 2, |st, _, r| {
        super::scripts::pending(st, r)
    }),
    sub("remove", 3, remove),
    sub("replicas", 3, replicas),
    sub("reset", 3, reset),
    sub("sentinels", 3, sentinels),
    sub("set", -5, set),
    sub("simulate-failure", -3, simulate_failure),
    sub("slaves", 3, replicas),
];

/// SENTINEL <subcommand> …: finds the subcommand, checks its arity, runs it.
pub fn sentinel_cmd(argv: &[Vec<u8>], r: &mut Reply) {
    let name = lower(&argv[1]);
    let Some(cmd) = SUBCOMMANDS.iter().find(|c| c.name == name) else {
        return r.error(&format!(
            "ERR unknown subcommand '{}'. Try SENTINEL HELP.",
            text(&argv[1])
        ));
    };
    if !arity_ok(cmd.arity, argv.len()) {
        return r.error(&format!(
            "ERR wrong number of arguments for 'sentinel|{name}' command"
        ));
    }
    (cmd.run)(&mut super::lock(), argv, r);
}

fn help(r: &mut Reply) {
    r.simples(&[
        "SENTINEL <subcommand> [<arg> [value] [opt] ...]. Subcommands:",
        "MASTERS | MASTER <name> | REPLICAS <name> | SENTINELS <name>",
        "GET-MASTER-ADDR-BY-NAME <name> | CKQUORUM <name> | FAILOVER <name>",
        "MONITOR <name> <ip> <port> <quorum> | REMOVE <name> | RESET <pattern>",
        "SET <name> <option> <value> ... | CONFIG GET <param> | CONFIG SET <param> <value>",
        "IS-MASTER-DOWN-BY-ADDR <ip> <port> <epoch> <runid> | INFO-CACHE [<name> ...]",
        "MYID | FLUSHCONFIG | PENDING-SCRIPTS | SIMULATE-FAILURE <flag> ... | DEBUG | HELP",
    ]);
}

/// SENTINEL MASTERS
fn masters(st: &mut State, _: &[Vec<u8>], r: &mut Reply) {
    r.array(st.masters.len());
    for m in st.masters.values() {
        write_inst(r, m, &m.inst);
    }
}

/// SENTINEL MASTER <name>
fn master(st: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    match st.masters.get(&text(&argv[2])) {
        Some(m) => write_inst(r, m, &m.inst),
        None => no_master(r),
    }
}

/// SENTINEL REPLICAS <name> (and SLAVES): replicas configured with `replica-announced no` are
/// not shown.
fn replicas(st: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    let Some(m) = st.masters.get(&text(&argv[2])) else {
        return no_master(r);
    };
    let shown: Vec<&Inst> = m
        .replicas
        .values()
        .filter(|i| i.replica_announced)
        .collect();
    r.array(shown.len());
    for i in shown {
        write_inst(r, m, i);
    }
}

/// SENTINEL SENTINELS <name>
fn sentinels(st: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    let Some(m) = st.masters.get(&text(&argv[2])) else {
        return no_master(r);
    };
    r.array(m.sentinels.len());
    for i in m.sentinels.values() {
        write_inst(r, m, i);
    }
}

/// SENTINEL GET-MASTER-ADDR-BY-NAME <name>: the promoted replica's address once a failover
/// has promoted it.
fn get_master_addr(st: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    match st.masters.get(&text(&argv[2])) {
        Some(m) => {
            let (ip, port) = m.current_addr();
            r.array(2);
            r.bulk(ip.as_bytes());
            r.bulk(port.to_string().as_bytes());
        }
        None => r.null_array(),
    }
}

/// SENTINEL FLUSHCONFIG
fn flushconfig(st: &mut State, _: &[Vec<u8>], r: &mut Reply) {
    st.config_dirty = true;
    if super::conf::flush(st) {
        r.ok();
    } else {
        r.error("ERR Failed to save config");
    }
}

/// SENTINEL REMOVE <name>
fn remove(st: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    let Some(m) = st.masters.remove(&text(&argv[2])) else {
        return no_master(r);
    };
    st.event(true, "-monitor", describe(&m, &m.inst));
    st.config_dirty = true;
    super::conf::flush(st);
    r.ok();
}

/// SENTINEL RESET <pattern>: forgets the replicas, sentinels and failover state of every master
/// whose name matches.
fn reset(st: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    let names: Vec<String> = st
        .masters
        .keys()
        .filter(|n| shards::glob::matches(&argv[2], n.as_bytes(), false))
        .cloned()
        .collect();
    for n in &names {
        brain::reset_master(st, n, None, true);
        if let Some(m) = st.masters.get(n) {
            let msg = describe(m, &m.inst);
            st.event(true, "+reset-master", msg);
        }
    }
    super::conf::flush(st);
    r.int(names.len() as i64);
}

/// SENTINEL DEBUG [<param> <value> …]: lists the timing parameters, or changes some (every
/// value is checked before any is changed).
fn debug(_: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    use std::sync::atomic::Ordering;
    if argv.len() == 2 {
        r.map(TIMINGS.len());
        for (k, v) in &TIMINGS {
            r.bulk(k.as_bytes());
            r.bulk(v.load(Ordering::Relaxed).to_string().as_bytes());
        }
        return;
    }
    let mut changes = Vec::new();
    for pair in argv[2..].chunks(2) {
        let name = text(&pair[0]);
        let index = TIMINGS
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(&name));
        let (Some(index), Some(value)) = (index, pair.get(1)) else {
            return r.error(&format!(
                "ERR Unknown option or number of arguments for SENTINEL DEBUG '{name}'"
            ));
        };
        let value = text(value);
        match value.parse::<u64>() {
            Ok(ms) if ms > 0 && ms <= i64::MAX as u64 => changes.push((index, ms)),
            _ => {
                return r.error(&format!(
                    "ERR Invalid argument '{value}' for SENTINEL DEBUG '{name}'"
                ))
            }
        }
    }
    for (index, ms) in changes {
        TIMINGS[index].1.store(ms, Ordering::Relaxed);
    }
    r.ok();
}

/// The flat field/value list of SENTINEL MASTER, REPLICAS and SENTINELS.
fn write_inst(r: &mut Reply, m: &Master, i: &Inst) {
    let mut f: Vec<(&str, String)> = vec![
        ("name", i.name.clone()),
        ("ip", i.ip.clone()),
        ("port", i.port.to_string()),
        ("runid", i.runid.clone()),
        (
            "flags",
            i.flags(
                i.kind == Kind::Master && m.failover_in_progress(),
                i.kind == Kind::Master && m.force_failover,
            ),
        ),
        ("link-pending-commands", i.link.pending.to_string()),
        ("link-refcount", "1".into()),
    ];
    if i.kind == Kind::Master && m.failover_in_progress() {
        f.push(("failover-state", m.failover_state.name().into()));
    }
    f.push(("last-ping-sent", ms_since(i.link.act_ping_time).to_string()));
    f.push((
        "last-ok-ping-reply",
        ms_since(Some(i.link.last_avail_time)).to_string(),
    ));
    f.push((
        "last-ping-reply",
        ms_since(Some(i.link.last_pong_time)).to_string(),
    ));
    if i.s_down() {
        f.push(("s-down-time", ms_since(i.s_down_since).to_string()));
    }
    if i.o_down_since.is_some() {
        f.push(("o-down-time", ms_since(i.o_down_since).to_string()));
    }
    f.push(("down-after-milliseconds", m.down_after_ms.to_string()));
    if i.kind != Kind::Sentinel {
        f.push(("info-refresh", ms_since(i.info_refresh).to_string()));
        let role = match i.role_reported {
            Role::Master => "master",
            Role::Slave => "slave",
        };
        f.push(("role-reported", role.into()));
        f.push((
            "role-reported-time",
            ms_since(Some(i.role_reported_time)).to_string(),
        ));
    }
    match i.kind {
        Kind::Master => {
            f.push(("config-epoch", m.config_epoch.to_string()));
            f.push(("num-slaves", m.replicas.len().to_string()));
            f.push(("num-other-sentinels", m.sentinels.len().to_string()));
            f.push(("quorum", m.quorum.to_string()));
            f.push(("failover-timeout", m.failover_timeout_ms.to_string()));
            f.push(("parallel-syncs", m.parallel_syncs.to_string()));
            if let Some(s) = &m.notification_script {
                f.push(("notification-script", s.clone()));
            }
            if let Some(s) = &m.client_reconfig_script {
                f.push(("client-reconfig-script", s.clone()));
            }
        }
        Kind::Replica => {
            f.push((
                "master-link-down-time",
                i.master_link_down_time_ms.to_string(),
            ));
            f.push((
                "master-link-status",
                if i.master_link_up { "ok" } else { "err" }.into(),
            ));
            f.push((
                "master-host",
                i.master_host.clone().unwrap_or_else(|| "?".into()),
            ));
            f.push(("master-port", i.master_port.to_string()));
            f.push(("slave-priority", i.slave_priority.to_string()));
            f.push(("slave-repl-offset", i.repl_offset.to_string()));
            f.push(("replica-announced", (i.replica_announced as u8).to_string()));
        }
        Kind::Sentinel => {
            f.push((
                "last-hello-message",
                ms_since(Some(i.last_hello_time)).to_string(),
            ));
            f.push((
                "voted-leader",
                i.leader.clone().unwrap_or_else(|| "?".into()),
            ));
            f.push(("voted-leader-epoch", i.leader_epoch.to_string()));
        }
    }
    r.map(f.len());
    for (k, v) in f {
        r.bulk(k.as_bytes());
        r.bulk(v.as_bytes());
    }
}

/// SENTINEL CKQUORUM <name>: whether enough sentinels are reachable to agree and to authorize a
/// failover.
fn ckquorum(st: &State, name: &str, r: &mut Reply) {
    let Some(m) = st.masters.get(name) else {
        return no_master(r);
    };
    let voters = m.sentinels.len() + 1;
    let usable = 1 + m
        .sentinels
        .values()
        .filter(|s| !s.s_down() && s.o_down_since.is_none() && s.link.connected)
        .count();
    let mut e = format!("{usable} usable Sentinels.");
    let mut bad = false;
    if usable < m.quorum as usize {
        e.push_str(" Not enough available Sentinels to reach the specified quorum for this master");
        bad = true;
    }
    if usable < voters / 2 + 1 {
        e.push_str(
            " Not enough available Sentinels to reach the majority and authorize a failover",
        );
        bad = true;
    }
    if bad {
        r.error(&format!("NOQUORUM {e}"));
    } else {
        r.simple(&format!(
            "OK {usable} usable Sentinels. Quorum and failover authorization can be reached"
        ));
    }
}

/// SENTINEL MONITOR <name> <ip> <port> <quorum>
fn monitor(st: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    let name = text(&argv[2]);
    let ip = text(&argv[3]);
    let quorum = match text(&argv[5]).parse::<i64>() {
        Ok(q) => q,
        Err(_) => return r.error("ERR Invalid quorum"),
    };
    if quorum <= 0 {
        return r.error("ERR Quorum must be 1 or greater.");
    }
    let port = match text(&argv[4]).parse::<i64>() {
        Ok(p) if (1..=65535).contains(&p) => p as u16,
        _ => return r.error("ERR Invalid port"),
    };
    let ip_ok = if st.resolve_hostnames {
        std::net::ToSocketAddrs::to_socket_addrs(&(ip.as_str(), port)).is_ok()
    } else {
        ip.parse::<std::net::IpAddr>().is_ok()
    };
    if !ip_ok {
        return r.error("ERR Invalid IP address or hostname specified");
    }
    if st.masters.contains_key(&name) {
        return r.error("ERR Duplicate master name.");
    }
    let id = st.new_id();
    let quorum = u32::try_from(quorum).unwrap_or(u32::MAX);
    let m = Master::new(id, name.clone(), ip, port, quorum);
    let msg = format!("{} quorum {}", describe(&m, &m.inst), quorum);
    st.masters.insert(name.clone(), m);
    st.event(true, "+monitor", msg);
    st.config_dirty = true;
    super::conf::flush(st);
    super::link::spawn_all(st, &name);
    r.ok();
}

fn failover(st: &mut State, name: &str, r: &mut Reply) {
    let mut events = Vec::new();
    let State {
        masters,
        current_epoch,
        ..
    } = st;
    let Some(m) = masters.get_mut(name) else {
        return no_master(r);
    };
    if m.failover_in_progress() {
        return r.error("INPROG Failover already in progress");
    }
    if brain::select_slave(m).is_none() {
        return r.error("NOGOODSLAVE No suitable replica to promote");
    }
    brain::start_failover_events(m, current_epoch, &mut events);
    m.force_failover = true;
    for (w, k, msg) in events {
        st.event(w, k, msg);
    }
    st.config_dirty = true;
    r.ok();
}

fn is_master_down(st: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    let (Ok(port), Ok(req_epoch)) = (text(&argv[3]).parse::<i64>(), text(&argv[4]).parse::<i64>())
    else {
        return r.error("ERR value is not an integer or out of range");
    };
    let ip = text(&argv[2]);
    let runid = text(&argv[5]);
    let myid = st.myid.clone();
    let mut events = Vec::new();
    let State {
        masters,
        current_epoch,
        tilt_since: tilt,
        ..
    } = st;
    let m = masters
        .values_mut()
        .find(|m| m.inst.ip == ip && i64::from(m.inst.port) == port);
    let mut down = false;
    let mut leader: Option<String> = None;
    let mut leader_epoch = 0;
    let mut dirty = false;
    if let Some(m) = m {
        down = m.inst.s_down() && tilt.is_none();
        if runid != "*" {
            let (l, e, d) = brain::vote_leader(
                m,
                current_epoch,
                &myid,
                req_epoch.max(0) as u64,
                &runid,
                &mut events,
            );
            leader = l;
            leader_epoch = e;
            dirty = d;
        }
    }
    for (w, k, msg) in events {
        st.event(w, k, msg);
    }
    if dirty {
        st.config_dirty = true;
        super::conf::flush(st);
    }
    r.array(3);
    r.int(down as i64);
    r.bulk(leader.as_deref().unwrap_or("*").as_bytes());
    r.int(leader_epoch as i64);
}

fn set(st: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    let name = text(&argv[2]);
    let deny = st.deny_scripts_reconfig;
    let Some(m) = st.masters.get_mut(&name) else {
        return no_master(r);
    };
    let mut i = 3;
    let mut changes: Vec<String> = Vec::new();
    let mut err = None;
    while i < argv.len() {
        let opt = lower(&argv[i]);
        let val = argv.get(i + 1).map(|v| text(v));
        let invalid = |v: &str| format!("ERR Invalid argument '{v}' for SENTINEL SET '{opt}'");
        let positive = |v: &str| v.parse::<i64>().ok().filter(|n| *n > 0);
        match (opt.as_str(), val) {
            ("down-after-milliseconds", Some(v)) => match positive(&v) {
                Some(n) => m.down_after_ms = n as u64,
                None => err = Some(invalid(&v)),
            },
            ("failover-timeout", Some(v)) => match positive(&v) {
                Some(n) => m.failover_timeout_ms = n as u64,
                None => err = Some(invalid(&v)),
            },
            ("parallel-syncs", Some(v)) => match positive(&v).and_then(|n| u32::try_from(n).ok()) {
                Some(n) => m.parallel_syncs = n,
                None => err = Some(invalid(&v)),
            },
            ("quorum", Some(v)) => match positive(&v).and_then(|n| u32::try_from(n).ok()) {
                Some(n) => m.quorum = n,
                None => err = Some(invalid(&v)),
            },
            ("master-reboot-down-after-period", Some(v)) => {
                match v.parse::<i64>().ok().filter(|n| *n >= 0) {
                    Some(n) => m.master_reboot_down_after_ms = n as u64,
                    None => err = Some(invalid(&v)),
                }
            }
            ("notification-script" | "client-reconfig-script", Some(_)) if deny => {
                err = Some("ERR Reconfiguration of scripts path is denied for security reasons. Check the deny-scripts-reconfig configuration directive in your Sentinel configuration".into())
            }
            ("notification-script", Some(v)) if !v.is_empty() && !executable(&v) => {
                err = Some("ERR Notification script seems non existing or non executable".into())
            }
            ("client-reconfig-script", Some(v)) if !v.is_empty() && !executable(&v) => {
                err = Some(
                    "ERR Client reconfiguration script seems non existing or non executable"
                        .into(),
                )
            }
            ("notification-script", Some(v)) => {
                m.notification_script = (!v.is_empty()).then_some(v)
            }
            ("client-reconfig-script", Some(v)) => {
                m.client_reconfig_script = (!v.is_empty()).then_some(v)
            }
            ("auth-pass", Some(v)) => m.auth_pass = (!v.is_empty()).then_some(v),
            ("auth-user", Some(v)) => m.auth_user = (!v.is_empty()).then_some(v),
            ("rename-command", Some(v)) if i + 2 < argv.len() => {
                let to = text(&argv[i + 2]);
                m.renamed.insert(v.to_ascii_lowercase(), to);
                i += 1;
            }
            _ => {
                err = Some(format!(
                    "ERR Unknown option or number of arguments for SENTINEL SET '{}'",
                    text(&argv[i])
                ))
            }
        }
        if err.is_some() {
            break;
        }
        let shown = if opt == "auth-pass" {
            "******".to_string()
        } else {
            argv.get(i + 1).map(|v| text(v)).unwrap_or_default()
        };
        changes.push(format!("{} {opt} {shown}", describe(m, &m.inst)));
        i += 2;
    }
    for c in changes {
        st.event(true, "+set", c);
    }
    st.config_dirty = true;
    super::conf::flush(st);
    match err {
        Some(e) => r.error(&e),
        None => r.ok(),
    }
}

/// Whether `path` names a file this process may execute.
fn executable(path: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(path) else {
        return false;
    };
    // SAFETY: access(2) reads the NUL-terminated path and nothing else.
    unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}

/// SENTINEL INFO-CACHE [<name> …]: the last INFO of each master and its replicas, with its age.
fn info_cache(st: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    let names: Vec<String> = argv[2..].iter().map(|a| text(a)).collect();
    let masters: Vec<&Master> = st
        .masters
        .values()
        .filter(|m| names.is_empty() || names.contains(&m.inst.name))
        .collect();
    r.array(masters.len() * 2);
    for m in masters {
        r.bulk(m.inst.name.as_bytes());
        r.array(m.replicas.len() + 1);
        for i in std::iter::once(&m.inst).chain(m.replicas.values()) {
            r.array(2);
            r.int(ms_since(i.info_refresh));
            if i.info.is_empty() {
                r.null();
            } else {
                r.verbatim(i.info.as_bytes());
            }
        }
    }
}

fn simulate_failure(st: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    let mut flags = 0;
    for a in &argv[2..] {
        match lower(a).as_str() {
            "crash-after-election" => flags |= SIMFAIL_CRASH_AFTER_ELECTION,
            "crash-after-promotion" => flags |= SIMFAIL_CRASH_AFTER_PROMOTION,
            "help" => {
                r.array(2);
                r.bulk(b"crash-after-election");
                r.bulk(b"crash-after-promotion");
                return;
            }
            _ => return r.error("ERR Unknown failure simulation specified"),
        }
    }
    st.simulate_failure = flags;
    r.ok();
}

const CONFIG_PARAMS: &[&str] = &[
    "resolve-hostnames",
    "announce-hostnames",
    "announce-ip",
    "announce-port",
    "sentinel-user",
    "sentinel-pass",
];

fn config(st: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    let sub = lower(&argv[2]);
    let usage = "ERR Only SENTINEL CONFIG GET <option> / SET <option> <value> are supported.";
    let yn = |b: bool| if b { "yes" } else { "no" }.to_string();
    if sub == "get" && argv.len() == 4 {
        let mut pairs = Vec::new();
        for p in CONFIG_PARAMS {
            if !shards::glob::matches(&argv[3], p.as_bytes(), true) {
                continue;
            }
            let v = match *p {
                "resolve-hostnames" => yn(st.resolve_hostnames),
                "announce-hostnames" => yn(st.announce_hostnames),
                "announce-ip" => st.announce_ip.clone(),
                "announce-port" => st.announce_port.to_string(),
                "sentinel-user" => st.sentinel_user.clone().unwrap_or_default(),
                _ => st.sentinel_pass.clone().unwrap_or_default(),
            };
            pairs.push((*p, v));
        }
        r.map(pairs.len());
        for (k, v) in pairs {
            r.bulk(k.as_bytes());
            r.bulk(v.as_bytes());
        }
        return;
    }
    if sub != "set" || argv.len() != 5 {
        return r.error(usage);
    }
    let (opt, val) = (lower(&argv[3]), text(&argv[4]));
    let bad = || format!("ERR Invalid value '{val}' to SENTINEL CONFIG SET '{opt}'");
    match opt.as_str() {
        "resolve-hostnames" | "announce-hostnames" => {
            let b = match val.to_ascii_lowercase().as_str() {
                "yes" => true,
                "no" => false,
                _ => return r.error(&bad()),
            };
            if opt == "resolve-hostnames" {
                st.resolve_hostnames = b;
            } else {
                st.announce_hostnames = b;
            }
        }
        "announce-ip" => st.announce_ip = val,
        "announce-port" => match val.parse::<u16>() {
            Ok(p) => st.announce_port = p,
            Err(_) => return r.error(&bad()),
        },
        "sentinel-user" => st.sentinel_user = (!val.is_empty()).then_some(val),
        "sentinel-pass" => st.sentinel_pass = (!val.is_empty()).then_some(val),
        _ => {
            return r.error(&format!(
                "ERR Invalid argument '{opt}' to SENTINEL CONFIG SET"
            ))
        }
    }
    st.config_dirty = true;
    super::conf::flush(st);
    r.ok();
}
