//! Start-up: checks the machine can run shardis (io_uring, locked memory, the port), binds the
//! listeners, starts one pinned glommio executor per shard, and handles SIGINT/SIGTERM.

use crate::config::Config;
use crate::ctx::{ShardCtx, Shared};
use anyhow::{bail, Context};
use glommio::{LocalExecutorBuilder, Placement};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::{IntoRawFd, RawFd};
use std::sync::Arc;

/// Locked memory glommio needs per shard beyond its io_memory (rings and bookkeeping).
const MEMLOCK_OVERHEAD_PER_SHARD: u64 = 512 * 1024;

fn usable_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Fails clearly if this kernel (or a seccomp policy) does not offer io_uring.
fn check_io_uring() -> anyhow::Result<()> {
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes a struct io_uring_params (120 bytes) we own.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        bail!(
            "io_uring is not available ({err}); shardis needs Linux 5.8+ with io_uring enabled \
             (check /proc/sys/kernel/io_uring_disabled and any seccomp profile)"
        );
    }
    // SAFETY: fd was just returned by the kernel and is ours to close.
    unsafe { libc::close(fd as RawFd) };
    Ok(())
}

/// Fails clearly if `ulimit -l` is too small for the shards' pinned io memory.
fn check_memlock(shards: usize, io_memory: u64) -> anyhow::Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Ok(());
    }
    if lim.rlim_cur == libc::RLIM_INFINITY {
        return Ok(());
    }
    let need = shards as u64 * (3 * io_memory + MEMLOCK_OVERHEAD_PER_SHARD);
    if lim.rlim_cur < need {
        bail!(
            "locked memory limit is {} KiB but {} shards with io-memory {} KiB need about {} KiB; \
             raise it with `ulimit -l {}` (or limits.conf / LimitMEMLOCK=), or use fewer --shards \
             or a smaller --io-memory",
            lim.rlim_cur / 1024,
            shards,
            io_memory / 1024,
            need / 1024,
            need.div_ceil(1024)
        );
    }
    Ok(())
}

/// Binds one SO_REUSEPORT listener per shard on the same address. An exclusive probe bind comes
/// first, so a port another process (even another shardis) holds is refused instead of shared.
fn bind_listeners(
    bind: &str,
    port: u16,
    n: usize,
    backlog: i32,
) -> anyhow::Result<(Vec<RawFd>, u16)> {
    let ip: std::net::IpAddr = bind
        .parse()
        .with_context(|| format!("invalid bind address {bind:?}"))?;
    // A named port is probed with an exclusive bind first, so one another process holds (even
    // another shardis, which would otherwise share it through SO_REUSEPORT) is refused. With
    // port 0 the first listener itself takes the kernel's pick and holds it: a probe released
    // before the listeners bind would leave a moment in which another process starting at the
    // same time could be handed the same port and share it.
    let mut port = port;
    if port != 0 {
        let probe = StdListener::bind(SocketAddr::new(ip, port)).with_context(|| {
            format!("cannot listen on {bind}:{port} (is the port already in use?)")
        })?;
        drop(probe);
    }
    let mut fds = Vec::with_capacity(n);
    for _ in 0..n {
        let addr: socket2::SockAddr = SocketAddr::new(ip, port).into();
        let domain = if ip.is_ipv4() {
            socket2::Domain::IPV4
        } else {
            socket2::Domain::IPV6
        };
        let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr)
            .with_context(|| format!("cannot listen on {bind}:{port}"))?;
        s.listen(backlog)?;
        if port == 0 {
            port = s
                .local_addr()?
                .as_socket()
                .map(|a| a.port())
                .context("listener address")?;
        }
        fds.push(s.into_raw_fd());
    }
    Ok((fds, port))
}

/// Blocks SIGINT/SIGTERM in every thread and waits for them on a dedicated one.
fn handle_signals(shared: Arc<Shared>) {
    // SAFETY: plain signal-mask manipulation with locally owned sigset_t values.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            let mut sig: libc::c_int = 0;
            libc::sigwait(&set, &mut sig);
            let name = if sig == libc::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            crate::log!("Received {name} scheduled shutdown...");
            crate::save::request_shutdown(&shared, 0, None);
        });
    }
}

/// `--export-rdb`: loads the data as a start would, writes every shard's keys into one RDB file
/// that Redis (or shardis) loads, and returns.
fn export_rdb(config: &Config, n: usize, path: &str) -> anyhow::Result<()> {
    let scripts = Arc::new(shards::script::Store::new(n));
    let starts = crate::load::load(config, n, &scripts)?;
    let now_ms = crate::ctx::now_us() / 1000;
    let aux = shards::rdb::file::Aux {
        ctime_s: now_ms / 1000,
        used_mem: crate::info::allocated_bytes(),
        aof_base: false,
        search: shards::search::published(),
    };
    let mut file = shards::rdb::file::FileWriter::new(&aux);
    for code in shards::script::function::codes(&scripts) {
        file.function(&code);
    }
    let mut keys = 0;
    let mut out = Vec::new();
    for s in &starts {
        for (i, db) in s.dbs.iter().enumerate() {
            if !db.is_empty() {
                keys += db.len();
                file.write_db(db, i, now_ms);
                out.extend_from_slice(&file.take_pending());
            }
        }
    }
    file.finish();
    out.extend_from_slice(&file.take_pending());
    crate::persist::write_atomic(std::path::Path::new(path), &out)
        .with_context(|| format!("writing {path}"))?;
    crate::log!("Exported {keys} keys of {n} shard(s) to {path}");
    Ok(())
}

/// Starts the server and returns when it stops.
pub fn run(config: Arc<Config>) -> anyhow::Result<()> {
    let n = match config.get_i64("shards") {
        0 => usable_cores(),
        n => n as usize,
    };
    let export = config.get("export-rdb");
    if !export.is_empty() {
        return export_rdb(&config, n, &export);
    }
    let io_memory = config.get_i64("io-memory").max(64 * 1024) as u64;
    check_io_uring()?;
    check_memlock(n, io_memory)?;
    let port = config.get_i64("port") as u16;
    let tls_port = config.get_i64("tls-port") as u16;
    let bind = config.get("bind");
    let backlog = config.get_i64("tcp-backlog") as i32;
    if tls_port != 0 {
        let tls = crate::tls::build(&|k| config.get(k))
            .map_err(|e| anyhow::anyhow!("{e}; failed to configure TLS"))?;
        config.tls.set(tls);
    }
    // As Redis: with a TLS port, port 0 means no plain port (without one, the kernel's pick).
    let (plain, port) = if port == 0 && tls_port != 0 {
        (Vec::new(), 0)
    } else {
        let (fds, port) = bind_listeners(&bind, port, n, backlog)?;
        (fds, port)
    };
    let tls = if tls_port != 0 {
        bind_listeners(&bind, tls_port, n, backlog)?.0
    } else {
        Vec::new()
    };
    let listeners: Vec<crate::net::Listeners> = (0..n)
        .map(|i| crate::net::Listeners {
            plain: plain.get(i).copied(),
            tls: tls.get(i).copied(),
        })
        .collect();
    config.set_startup("port", port.to_string());
    config.set_startup("shards", n.to_string());
    let scripts = Arc::new(shards::script::Store::new(n));
    let startup_memory = crate::info::allocated_bytes();
    let starts = crate::load::load(&config, n, &scripts)?;
    crate::cluster::init(&config, port)?;
    let shared = Arc::new(Shared::new(n, port, config.clone(), scripts));
    shared
        .startup_memory
        .fetch_add(startup_memory, std::sync::atomic::Ordering::Relaxed);
    crate::acl_cmds::init(&shared)?;
    crate::cluster::bus::set_shared(shared.clone());
    // `replicaof`: a replica from the first client on (its link starts with the shards).
    let of = config.get("replicaof");
    let mut words = of.split_whitespace();
    if let (Some(host), Some(master_port)) = (words.next(), words.next()) {
        let master_port: u16 = master_port
            .parse()
            .with_context(|| format!("replicaof {of:?}: bad port"))?;
        crate::repl::replica::start(&shared, host.to_string(), master_port);
    }
    crate::metrics::start(config.clone(), port)?;
    handle_signals(shared.clone());

    let req_mesh = glommio::channels::channel_mesh::MeshBuilder::full(n, crate::msg::MESH_CAPACITY);
    let rep_mesh = glommio::channels::channel_mesh::MeshBuilder::full(n, crate::msg::MESH_CAPACITY);
    let cores = usable_cores();
    let mut handles = Vec::with_capacity(n);
    for ((id, fd), start) in listeners.into_iter().enumerate().zip(starts) {
        let (req_mesh, rep_mesh, shared) = (req_mesh.clone(), rep_mesh.clone(), shared.clone());
        let h = LocalExecutorBuilder::new(Placement::Fixed(id % cores))
            .name(&format!("shard-{id}"))
            .io_memory(io_memory as usize)
            .spawn(move || async move {
                ShardCtx::run(id, n, fd, shared, req_mesh, rep_mesh, start).await
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "starting shard {id}: {e} (io_uring or locked memory; see `ulimit -l`)"
                )
            })?;
        handles.push(h);
    }
    // The first `listening on` address is the plain port's, or the TLS port's when it is the
    // only one (tests and scripts read it).
    let listening = match (port, tls_port) {
        (p, 0) => format!("listening on {bind}:{p}"),
        (0, t) => format!("listening on {bind}:{t} (TLS)"),
        (p, t) => format!("listening on {bind}:{p}, TLS on {bind}:{t}"),
    };
    crate::log!(
        "shardis {} (redis_version {}) with {n} shard(s) on {} core(s): {listening}",
        env!("CARGO_PKG_VERSION"),
        crate::ctx::REDIS_VERSION,
        usable_cores()
    );
    crate::log!("Ready to accept connections");
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => crate::log!("shard stopped with an error: {e:#}"),
            Err(e) => crate::log!("shard failed: {e}"),
        }
    }
    Ok(())
}
