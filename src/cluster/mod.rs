//! Redis Cluster mode (`cluster-enabled yes`), and its one-box stand-in (`cluster-enabled
//! emulated`).
//!
//! This node's configuration ([`state`], kept in `cluster-config-file` in Redis's nodes.conf
//! format), the redirections every command goes through ([`route`]: CROSSSLOT, MOVED, ASK,
//! TRYAGAIN, CLUSTERDOWN), the CLUSTER subcommands ([`commands`]), MIGRATE ([`migrate`]) and
//! the cluster bus ([`bus`]: Redis's node-to-node protocol, its own thread).
//!
//! Sharing: the configuration is one immutable [`State`] behind an `Arc`. A change (an admin
//! command, rare) locks a mutex, edits a copy, saves it, swaps it in and bumps a generation
//! counter. Each shard's thread keeps the `Arc` it last saw; the per-command check reads the
//! generation (one atomic load) and only on a change takes the mutex to pick up the new one.

pub mod bus;
pub mod commands;
pub mod migrate;
pub mod route;
pub mod state;

use crate::config::Config;
use state::State;
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// `cluster-enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    /// Redis Cluster semantics.
    On,
    /// One node owning every slot, for cluster clients against one process: answers the
    /// topology commands, redirects nothing.
    Emulated,
}

/// The process's cluster node.
pub struct Cluster {
    pub mode: Mode,
    config: Arc<Config>,
    /// Where the configuration is saved (`cluster-config-file`, under `dir`).
    path: PathBuf,
    /// The current configuration; writers hold the lock while they change and save it.
    current: Mutex<Arc<State>>,
    /// Bumped after every change, so readers know to pick up the new `Arc`.
    generation: AtomicU64,
    /// The configuration generation the state was last brought in line with.
    config_seen: AtomicU64,
    /// The port clients reach this process on.
    port: u16,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

thread_local! {
    /// This thread's copy of the state: (cluster generation, config generation, state).
    static SEEN: RefCell<Option<(u64, u64, Arc<State>)>> = const { RefCell::new(None) };
}

/// The cluster node, when cluster mode (or its emulation) is on.
pub fn get() -> Option<&'static Cluster> {
    CLUSTER.get().filter(|c| c.mode != Mode::Off)
}

/// The mode, `Off` before start-up set it.
pub fn mode() -> Mode {
    CLUSTER.get().map_or(Mode::Off, |c| c.mode)
}

/// Whether Redis Cluster semantics (redirections, database 0 only) apply.
pub fn enabled() -> bool {
    mode() == Mode::On
}

/// INFO's `redis_mode` and HELLO's `mode`.
pub fn server_mode() -> &'static str {
    match mode() {
        Mode::Off => "standalone",
        _ => "cluster",
    }
}

/// Reads `cluster-enabled` and, in cluster mode, loads (or creates) the node's configuration.
/// Called once at start-up, after the port is known.
pub fn init(config: &Arc<Config>, port: u16) -> anyhow::Result<()> {
    let mode = match config.get("cluster-enabled").as_str() {
        "yes" => Mode::On,
        "emulated" => Mode::Emulated,
        _ => Mode::Off,
    };
    shards::keyspace::CLUSTER.store(mode == Mode::On, Ordering::Relaxed);
    if mode == Mode::On {
        let _ = shards::keyspace::CLUSTER_SLOT_CHECK.set(route::script_slot_check);
    }
    let dir = PathBuf::from(config.get("dir"));
    let file = config.get("cluster-config-file");
    let path = dir.join(&file);
    let state = match mode {
        Mode::On => match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => State::from_config(&text).map_err(|e| {
                anyhow::anyhow!(
                    "Unrecoverable error: corrupted cluster config file \"{}\": {e}",
                    path.display()
                )
            })?,
            Ok(_) => State::new(state::random_id(), port, 0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                State::new(state::random_id(), port, 0)
            }
            Err(e) => anyhow::bail!("cannot read cluster config file {}: {e}", path.display()),
        },
        Mode::Emulated => {
            let mut st = State::new(state::random_id(), port, 0);
            for s in 0..state::SLOTS as u16 {
                st.assign(s, Some(0));
            }
            st
        }
        Mode::Off => State::new(String::new(), port, 0),
    };
    let cluster = Cluster {
        mode,
        config: config.clone(),
        path,
        current: Mutex::new(Arc::new(state)),
        generation: AtomicU64::new(1),
        config_seen: AtomicU64::new(0),
        port,
    };
    // Brought in line with the configuration (addresses, state) from the start.
    let _ = cluster.change(|_| Ok::<(), ()>(()));
    if mode == Mode::On {
        // Written at once, so the node keeps its id across restarts (and a bad directory fails
        // the start, as in Redis).
        cluster
            .save_now()
            .map_err(|e| anyhow::anyhow!("cannot save the cluster config file: {e}"))?;
    }
    CLUSTER
        .set(cluster)
        .map_err(|_| anyhow::anyhow!("cluster state initialised twice"))?;
    if let (Mode::On, Some(cluster)) = (mode, CLUSTER.get()) {
        let bus_port = match config.get_i64("cluster-port") as u16 {
            0 => port.wrapping_add(10000),
            p => p,
        };
        let bind = config.get("bind");
        let first = bind.split_whitespace().next().unwrap_or("");
        bus::start(cluster, first.trim_start_matches('-'), bus_port)?;
    }
    Ok(())
}

impl Cluster {
    /// The current state, as this thread last saw it (refreshed when it changed).
    pub fn state(&self) -> Arc<State> {
        self.with_state(|_, st| st.clone())
    }

    /// Runs `f` on the current state without touching the shared `Arc`'s count (the
    /// per-command path: shards must not bounce one cache line between them). `f` must not
    /// call back into [`Cluster::state`].
    pub fn with_state<R>(&self, f: impl FnOnce(&Self, &Arc<State>) -> R) -> R {
        let generation = self.generation.load(Ordering::Acquire);
        let config_gen = self.config.generation();
        SEEN.with(|seen| {
            let mut seen = seen.borrow_mut();
            if let Some((g, c, st)) = seen.as_ref() {
                if *g == generation && *c == config_gen {
                    return f(self, st);
                }
            }
            let config_seen = self.config_seen.load(Ordering::Acquire);
            if config_seen != config_gen
                && self
                    .config_seen
                    .compare_exchange(config_seen, config_gen, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                // A CONFIG SET may have changed the announced address or the coverage rule
                // (one thread brings the state in line; the others pick it up).
                let _ = self.change(|_| Ok::<(), ()>(()));
            }
            let st = self.lock().clone();
            let g = self.generation.load(Ordering::Acquire);
            let (_, _, st) = seen.insert((g, config_gen, st));
            f(self, st)
        })
    }

    /// Moves on every change of the state.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Arc<State>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the state: `f` edits a copy; if it succeeds, the copy is brought in line with
    /// the configuration, saved (cluster mode) and published.
    ///
    /// A failed save is logged and the change still holds (Redis would exit; CLUSTER
    /// SAVECONFIG reports the error).
    pub fn change<T, E>(&self, f: impl FnOnce(&mut State) -> Result<T, E>) -> Result<T, E> {
        let mut current = self.lock();
        let mut next = State::clone(&current);
        let out = f(&mut next)?;
        self.config_seen
            .store(self.config.generation(), Ordering::Release);
        self.apply_config(&mut next);
        if self.mode == Mode::On {
            if let Err(e) = self.save(&next) {
                crate::logging::write(
                    crate::logging::Level::Warning,
                    &format!("cannot save the cluster config file: {e}"),
                );
            }
        }
        *current = Arc::new(next);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(out)
    }

    /// The bus's change: `f` edits a copy and says whether to publish it and whether to save
    /// it too (Redis saves nodes.conf on topology, slot, flag and epoch changes, not on every
    /// heartbeat). Nothing is copied back when `f` reports no change.
    pub(crate) fn bus_change<R>(&self, f: impl FnOnce(&mut State) -> (R, bool, bool)) -> R {
        let mut current = self.lock();
        let mut next = State::clone(&current);
        let (out, publish, save) = f(&mut next);
        if publish || save {
            self.apply_config(&mut next);
            if save {
                if let Err(e) = self.save(&next) {
                    crate::logging::write(
                        crate::logging::Level::Warning,
                        &format!("cannot save the cluster config file: {e}"),
                    );
                }
            }
            *current = Arc::new(next);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        out
    }

    /// This node's announced address and the coverage rule, from the configuration.
    fn apply_config(&self, st: &mut State) {
        let cfg = &self.config;
        let announce_port = cfg.get_i64("cluster-announce-port") as u16;
        let bus_port = cfg.get_i64("cluster-announce-bus-port") as u16;
        let cluster_port = cfg.get_i64("cluster-port") as u16;
        let ip = cfg.get("cluster-announce-ip");
        let hostname = cfg.get("cluster-announce-hostname");
        let me = st.me_mut();
        me.port = if announce_port != 0 {
            announce_port
        } else {
            self.port
        };
        me.cport = if bus_port != 0 {
            bus_port
        } else if cluster_port != 0 {
            cluster_port
        } else {
            self.port.wrapping_add(10000)
        };
        if !ip.is_empty() {
            me.ip = ip;
        } else if self.mode == Mode::Emulated {
            // Replies then show the address each client reached.
            me.ip.clear();
        }
        me.hostname = hostname;
        if cfg.get("cluster-replica-no-failover") == "yes" {
            me.flags |= state::nflag::NOFAILOVER;
        } else {
            me.flags &= !state::nflag::NOFAILOVER;
        }
        st.update(cfg.get("cluster-require-full-coverage") == "yes");
    }

    /// Writes the configuration file atomically: a temporary file, synced, renamed over it.
    fn save(&self, st: &State) -> Result<(), String> {
        use std::io::Write;
        let tmp = self
            .path
            .with_extension(format!("tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(st.to_config().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: {e}", self.path.display())
        })
    }

    /// Saves the current state again (CLUSTER SAVECONFIG).
    pub fn save_now(&self) -> Result<(), String> {
        let current = self.lock();
        self.save(&current)
    }

    /// `cluster-allow-pubsubshard-when-down`.
    pub fn pubsubshard_when_down(&self) -> bool {
        self.config.get("cluster-allow-pubsubshard-when-down") == "yes"
    }

    /// `cluster-allow-reads-when-down`.
    pub fn reads_when_down(&self) -> bool {
        self.config.get("cluster-allow-reads-when-down") == "yes"
    }
}
