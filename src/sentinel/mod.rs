//! Sentinel mode (`shardis --sentinel`, `shardis sentinel.conf --sentinel`): monitors masters
//! (shardis or redis-server), agrees with other sentinels (shardis or Redis's) that one is down,
//! elects a leader and fails over, speaking Redis 7.0's Sentinel protocol so that Redis's
//! sentinels and Sentinel-aware clients work with it.
//!
//! It runs no shards and no glommio executors: plain threads with blocking sockets, each with a
//! timeout, around one `Mutex<State>`:
//! - a listener thread and one thread per client connection (`server`; the SENTINEL
//!   subcommands are in `commands`);
//! - one link thread per monitored instance sending PING, INFO, hello messages and queued
//!   commands, plus one hello-subscription thread per master and replica (`link`, over the
//!   small RESP client in `client`);
//! - the timer thread, which runs the state machine every 100 ms (`brain`) and the
//!   notification scripts (`scripts`).
//!
//! The state (`state`) is only ever touched with the lock held, and the lock is never held
//! across network I/O. Every change to what the sentinel knows is saved by rewriting its config
//! file atomically (`conf`), as Redis does. Nothing a peer or a client sends can panic the
//! process: lengths are bounded, indexes checked, time arithmetic saturates.

mod brain;
mod client;
mod commands;
mod conf;
mod link;
mod scripts;
mod server;
mod state;

use state::State;
use std::sync::{Mutex, MutexGuard, OnceLock};

static STATE: OnceLock<Mutex<State>> = OnceLock::new();

/// Locks the sentinel's state. A poisoned lock (a thread panicked while holding it) is taken
/// over: the panic hook aborts the process anyway.
pub(crate) fn lock() -> MutexGuard<'static, State> {
    let m = STATE.get_or_init(|| Mutex::new(State::new()));
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Whether the command line asks for sentinel mode (like redis-server, `--sentinel` anywhere,
/// or a binary named `*-sentinel`).
pub fn requested() -> bool {
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_default();
    argv0.ends_with("-sentinel") || args.any(|a| a == "--sentinel")
}

/// `n` random hex digits (run ids, sentinel ids).
pub fn random_hex(n: usize) -> String {
    use std::io::Read;
    let mut bytes = vec![0u8; n.div_ceil(2)];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !ok {
        let mut rng = shards::rng::Rng::new(seed());
        for b in bytes.iter_mut() {
            *b = rng.next_u64() as u8;
        }
    }
    let mut s: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    s.truncate(n);
    s
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as u64 ^ ((std::process::id() as u64) << 32)
}

/// A random number of milliseconds below `n` (failover start jitter).
pub fn random_ms(n: u64) -> u64 {
    shards::rng::Rng::new(seed()).next_u64() % n.max(1)
}

/// Runs the sentinel until SHUTDOWN (or a fatal error at start-up). Returns the exit code.
pub fn run() -> i32 {
    crate::logging::set_role(b'X');
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = conf::load_from_args(&args) {
        warn!("*** FATAL CONFIG ERROR *** {e}");
        return 1;
    }
    let listeners = match server::bind() {
        Ok(l) => l,
        Err(e) => {
            warn!("Could not create server TCP listening socket: {e}");
            return 1;
        }
    };
    {
        let mut st = lock();
        log!(
            "Running mode=sentinel, port={}. (shardis {})",
            st.port,
            env!("CARGO_PKG_VERSION")
        );
        if st.myid.is_empty() {
            st.myid = random_hex(40);
        }
        st.config_dirty = true;
        conf::flush(&mut st);
        warn!("Sentinel ID is {}", st.myid);
        let names: Vec<String> = st.masters.keys().cloned().collect();
        for name in names {
            let Some(m) = st.masters.get(&name) else {
                continue;
            };
            let msg = format!(
                "master {} {} {} quorum {}",
                name, m.inst.ip, m.inst.port, m.quorum
            );
            st.event(true, "+monitor", msg);
            link::spawn_all(&mut st, &name);
        }
    }
    std::thread::spawn(brain::run);
    for l in listeners {
        std::thread::spawn(move || server::accept_loop(l));
    }
    loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let st = lock();
        if st.shutdown {
            warn!("Sentinel is now ready to exit, bye bye...");
            return 0;
        }
    }
}
