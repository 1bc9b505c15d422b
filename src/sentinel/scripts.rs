//! Notification and client-reconfiguration scripts: queued when an event calls for them, run by
//! the timer (at most `RUNNING_MAX` at once, each killed after SCRIPT-MAX-RUNTIME), and retried
//! when they exit with status 1, as Redis does.

use super::state::State;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// The most scripts waiting or running; the oldest waiting one is dropped beyond it.
pub const QUEUE_MAX: usize = 256;
/// The most scripts running at once.
const RUNNING_MAX: usize = 16;
/// The most times a script is retried.
const RETRIES_MAX: u32 = 10;

/// A script waiting or running.
pub struct Script {
    pub argv: Vec<String>,
    pub child: Option<Child>,
    pub started: Option<Instant>,
    pub not_before: Instant,
    pub retries: u32,
}

/// Queues `path` with `args`.
pub fn schedule(st: &mut State, path: &str, args: &[String]) {
    if st.scripts.len() >= QUEUE_MAX {
        match st.scripts.iter().position(|s| s.child.is_none()) {
            Some(i) => {
                st.scripts.remove(i);
            }
            None => return,
        }
    }
    let mut argv = vec![path.to_string()];
    argv.extend(args.iter().cloned());
    st.scripts.push_back(Script {
        argv,
        child: None,
        started: None,
        not_before: Instant::now(),
        retries: 0,
    });
}

/// Collects finished scripts, kills overdue ones and starts those that are due. Called by the
/// timer.
pub fn run(st: &mut State) {
    let now = Instant::now();
    let mut i = 0;
    while i < st.scripts.len() {
        let s = &mut st.scripts[i];
        let Some(child) = s.child.as_mut() else {
            i += 1;
            continue;
        };
        let overdue = s
            .started
            .is_some_and(|t| now.duration_since(t) > super::state::script_max_runtime());
        if overdue {
            let _ = child.kill();
        }
        match child.try_wait() {
            Ok(None) => i += 1,
            Ok(Some(status)) => {
                // Exit status 1 (or a kill for running too long) asks for a retry.
                let retry = (status.code() == Some(1) || overdue) && s.retries < RETRIES_MAX;
                if retry {
                    s.child = None;
                    s.started = None;
                    s.retries += 1;
                    s.not_before =
                        now + super::state::script_retry_delay() * (1 << (s.retries - 1).min(10));
                    i += 1;
                } else {
                    if status.code() != Some(0) {
                        warn!("-script-error {} {status}", s.argv.join(" "));
                    }
                    st.scripts.remove(i);
                }
            }
            Err(_) => {
                st.scripts.remove(i);
            }
        }
    }
    let mut running = st.scripts.iter().filter(|s| s.child.is_some()).count();
    let mut failed = Vec::new();
    for (n, s) in st.scripts.iter_mut().enumerate() {
        if running >= RUNNING_MAX {
            break;
        }
        if s.child.is_some() || s.not_before > now {
            continue;
        }
        let spawned = Command::new(&s.argv[0])
            .args(&s.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            Ok(c) => {
                s.child = Some(c);
                s.started = Some(now);
                running += 1;
            }
            Err(e) => {
                warn!("-script-error {}: {e}", s.argv[0]);
                failed.push(n);
            }
        }
    }
    for n in failed.into_iter().rev() {
        st.scripts.remove(n);
    }
}

/// The master an event is about: `… @ <master> <ip> <port>`, `master <name> …`, or the first
/// word of `+switch-master`.
pub fn master_of(kind: &str, msg: &str) -> Option<String> {
    if let Some((_, at)) = msg.split_once(" @ ") {
        return at.split(' ').next().map(str::to_string);
    }
    if kind == "+switch-master" {
        return msg.split(' ').next().map(str::to_string);
    }
    msg.strip_prefix("master ")
        .and_then(|m| m.split(' ').next())
        .map(str::to_string)
}

/// Runs the master's client-reconfig-script, if it has one:
/// `<master-name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>`.
pub fn client_reconfig(
    st: &mut State,
    master: &str,
    leader: bool,
    state: &str,
    from: (&str, u16),
    to: (&str, u16),
) {
    let Some(path) = st
        .masters
        .get(master)
        .and_then(|m| m.client_reconfig_script.clone())
    else {
        return;
    };
    let args = vec![
        master.to_string(),
        if leader { "leader" } else { "observer" }.to_string(),
        state.to_string(),
        from.0.to_string(),
        from.1.to_string(),
        to.0.to_string(),
        to.1.to_string(),
    ];
    schedule(st, &path, &args);
}

/// SENTINEL PENDING-SCRIPTS: each script's argv, state, pid, and how long it has run or has to
/// wait.
pub fn pending(st: &State, r: &mut shards::resp::Reply) {
    let now = Instant::now();
    r.array(st.scripts.len());
    for s in &st.scripts {
        r.map(5);
        r.bulk(b"argv");
        r.array(s.argv.len());
        for a in &s.argv {
            r.bulk(a.as_bytes());
        }
        r.bulk(b"flags");
        match (&s.child, s.started) {
            (Some(c), Some(t)) => {
                r.bulk(b"running");
                r.bulk(b"pid");
                r.bulk(c.id().to_string().as_bytes());
                r.bulk(b"run-time");
                r.bulk(now.duration_since(t).as_millis().to_string().as_bytes());
            }
            _ => {
                r.bulk(b"scheduled");
                r.bulk(b"pid");
                r.bulk(b"0");
                r.bulk(b"run-delay");
                let wait = s.not_before.saturating_duration_since(now).as_millis();
                r.bulk(wait.to_string().as_bytes());
            }
        }
        r.bulk(b"retry-num");
        r.bulk(s.retries.to_string().as_bytes());
    }
}
