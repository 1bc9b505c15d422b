//! INFO: Redis 7.0's sections and field names, summed over shards, plus a `shards` section.

use crate::ctx::{Shared, REDIS_VERSION};
use crate::msg::ShardStats;
use crate::server_cmds::field;
use std::time::{SystemTime, UNIX_EPOCH};

const DEFAULT: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "errorstats",
    "cluster",
    "keyspace",
];
const ALL: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "commandstats",
    "errorstats",
    "latencystats",
    "cluster",
    "keyspace",
    "shards",
];

/// Whether the sections asked for include latencystats (whose histograms the shards then send).
pub fn wants_latency(args: &[String]) -> bool {
    selected(args).contains(&"latencystats")
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b < 1024.0 {
        format!("{bytes}B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}M", b / (1024.0 * 1024.0))
    } else {
        format!("{:.2}G", b / (1024.0 * 1024.0 * 1024.0))
    }
}

/// Bytes allocated by the process, from jemalloc (refreshed on each call).
pub fn allocated_bytes() -> u64 {
    let _ = tikv_jemalloc_ctl::epoch::advance();
    tikv_jemalloc_ctl::stats::allocated::read().unwrap_or(0) as u64
}

pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn cpu_times(who: libc::c_int) -> (f64, f64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(who, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_stime), t(ru.ru_utime))
}

/// Which sections the arguments select (Redis 7 takes several).
fn selected(args: &[String]) -> Vec<&'static str> {
    if args.is_empty() || args.iter().any(|a| a == "default") {
        let mut v = DEFAULT.to_vec();
        v.extend(
            args.iter()
                .filter_map(|a| ALL.iter().find(|s| *s == a).copied())
                .filter(|s| !DEFAULT.contains(s)),
        );
        return v;
    }
    if args.iter().any(|a| a == "all" || a == "everything") {
        return ALL.to_vec();
    }
    ALL.iter()
        .filter(|s| args.iter().any(|a| a == *s))
        .copied()
        .collect()
}

/// Renders the INFO text for the chosen sections.
pub fn render(shared: &Shared, args: &[String], stats: &[(usize, ShardStats)]) -> String {
    let sum = |f: fn(&ShardStats) -> u64| stats.iter().map(|(_, s)| f(s)).sum::<u64>();
    let mut out = String::new();
    for (i, section) in selected(args).into_iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let o = &mut out;
        match section {
            "server" => {
                o.push_str("# Server\r\n");
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let up = SystemTime::now()
                    .duration_since(shared.started)
                    .unwrap_or_default()
                    .as_secs();
                field(o, "redis_version", REDIS_VERSION);
                field(o, "shardis_version", env!("CARGO_PKG_VERSION"));
                field(o, "redis_git_sha1", "00000000");
                field(o, "redis_git_dirty", 0);
                field(o, "redis_build_id", "0");
                field(o, "redis_mode", crate::cluster::server_mode());
                field(o, "os", std::env::consts::OS);
                field(o, "arch_bits", 64);
                field(o, "monotonic_clock", "POSIX clock_gettime");
                field(o, "multiplexing_api", "epoll");
                field(o, "atomicvar_api", "c11-builtin");
                // Not built by gcc: the version of the C compiler Redis would name has no
                // meaning here.
                field(o, "gcc_version", "0.0.0");
                field(o, "process_id", std::process::id());
                field(o, "process_supervised", "no");
                field(o, "run_id", &shared.run_id);
                field(o, "tcp_port", shared.port);
                field(o, "server_time_usec", now.as_micros());
                field(o, "uptime_in_seconds", up);
                field(o, "uptime_in_days", up / 86400);
                field(o, "hz", shared.config.get("hz"));
                field(o, "configured_hz", shared.config.get("hz"));
                // Redis's LRU clock: seconds, 24 bits.
                field(o, "lru_clock", now.as_secs() & ((1 << 24) - 1));
                field(
                    o,
                    "executable",
                    std::env::current_exe()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                );
                field(
                    o,
                    "config_file",
                    shared.config.file.clone().unwrap_or_default(),
                );
                field(o, "io_threads_active", 0);
                field(o, "shards", shared.nshards);
            }
            "clients" => {
                o.push_str("# Clients\r\n");
                field(
                    o,
                    "connected_clients",
                    stats
                        .iter()
                        .map(|(_, s)| s.connected_clients)
                        .sum::<usize>(),
                );
                field(o, "cluster_connections", 0);
                field(o, "maxclients", shared.config.get("maxclients"));
                field(o, "client_recent_max_input_buffer", 0);
                field(o, "client_recent_max_output_buffer", 0);
                field(
                    o,
                    "blocked_clients",
                    stats.iter().map(|(_, s)| s.blocked_clients).sum::<usize>(),
                );
                field(
                    o,
                    "tracking_clients",
                    stats.iter().map(|(_, s)| s.tracking.0).sum::<usize>(),
                );
                field(o, "clients_in_timeout_table", 0);
            }
            "memory" => memory(o, shared, stats),
            "persistence" => {
                persistence(o, shared, stats);
            }
            "stats" => {
                o.push_str("# Stats\r\n");
                field(
                    o,
                    "total_connections_received",
                    sum(|s| s.connections_received),
                );
                field(o, "total_commands_processed", sum(|s| s.commands));
                let rate = |f: fn(&ShardStats) -> f64| stats.iter().map(|(_, s)| f(s)).sum::<f64>();
                field(o, "instantaneous_ops_per_sec", rate(|s| s.rates.0) as u64);
                field(o, "total_net_input_bytes", sum(|s| s.net_input_bytes));
                field(o, "total_net_output_bytes", sum(|s| s.net_output_bytes));
                field(o, "total_net_repl_input_bytes", 0);
                field(o, "total_net_repl_output_bytes", 0);
                field(
                    o,
                    "instantaneous_input_kbps",
                    format!("{:.2}", rate(|s| s.rates.1) / 1024.0),
                );
                field(
                    o,
                    "instantaneous_output_kbps",
                    format!("{:.2}", rate(|s| s.rates.2) / 1024.0),
                );
                field(o, "instantaneous_input_repl_kbps", "0.00");
                field(o, "instantaneous_output_repl_kbps", "0.00");
                field(o, "rejected_connections", sum(|s| s.rejected_connections));
                let repl = &shared.repl;
                let count =
                    |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
                field(o, "sync_full", count(&repl.sync_full));
                field(o, "sync_partial_ok", count(&repl.sync_partial_ok));
                field(o, "sync_partial_err", count(&repl.sync_partial_err));
                field(o, "expired_keys", sum(|s| s.expired_keys));
                field(o, "expired_stale_perc", "0.00");
                field(o, "expired_time_cap_reached_count", 0);
                field(o, "expire_cycle_cpu_milliseconds", 0);
                field(o, "evicted_keys", sum(|s| s.evicted_keys));
                field(o, "evicted_clients", 0);
                let current_us = stats
                    .iter()
                    .map(|(_, s)| s.eviction_current_us)
                    .max()
                    .unwrap_or(0);
                let total_us = sum(|s| s.eviction_exceeded_us) + current_us;
                field(o, "total_eviction_exceeded_time", total_us / 1000);
                field(o, "current_eviction_exceeded_time", current_us / 1000);
                field(o, "keyspace_hits", sum(|s| s.keyspace_hits));
                field(o, "keyspace_misses", sum(|s| s.keyspace_misses));
                let unique = |f: fn(&ShardStats) -> &Vec<Vec<u8>>| {
                    stats
                        .iter()
                        .flat_map(|(_, s)| f(s).iter())
                        .collect::<std::collections::HashSet<_>>()
                        .len()
                };
                field(o, "pubsub_channels", unique(|s| &s.pubsub.0));
                field(o, "pubsub_patterns", unique(|s| &s.pubsub.1));
                field(o, "pubsubshard_channels", unique(|s| &s.pubsub.2));
                // Features this build has not got: forks (snapshots are taken in place),
                // active defragmentation, MIGRATE.
                for name in [
                    "latest_fork_usec",
                    "total_forks",
                    "migrate_cached_sockets",
                    "slave_expires_tracked_keys",
                    "active_defrag_hits",
                    "active_defrag_misses",
                    "active_defrag_key_hits",
                    "active_defrag_key_misses",
                    "total_active_defrag_time",
                    "current_active_defrag_time",
                ] {
                    field(o, name, 0);
                }
                field(o, "tracking_total_keys", sum(|s| s.tracking.1 as u64));
                field(o, "tracking_total_items", sum(|s| s.tracking.2 as u64));
                // Every shard holds every prefix.
                let prefixes = stats.iter().map(|(_, s)| s.tracking.3).max();
                field(o, "tracking_total_prefixes", prefixes.unwrap_or(0));
                field(o, "unexpected_error_replies", 0);
                let errors: u64 = stats
                    .iter()
                    .flat_map(|(_, s)| s.errorstats.iter().map(|e| e.1))
                    .sum();
                field(o, "total_error_replies", errors);
                field(o, "dump_payload_sanitizations", 0);
                field(o, "total_reads_processed", sum(|s| s.commands));
                field(o, "total_writes_processed", sum(|s| s.commands));
                field(o, "io_threaded_reads_processed", 0);
                field(o, "io_threaded_writes_processed", 0);
                field(o, "reply_buffer_shrinks", 0);
                field(o, "reply_buffer_expands", 0);
            }
            "replication" => {
                o.push_str("# Replication\r\n");
                crate::repl::info(shared, o);
            }
            "cpu" => {
                o.push_str("# CPU\r\n");
                let (sys, user) = cpu_times(libc::RUSAGE_SELF);
                field(o, "used_cpu_sys", format!("{sys:.6}"));
                field(o, "used_cpu_user", format!("{user:.6}"));
                let (sys, user) = cpu_times(libc::RUSAGE_CHILDREN);
                field(o, "used_cpu_sys_children", format!("{sys:.6}"));
                field(o, "used_cpu_user_children", format!("{user:.6}"));
                // The thread answering (one shard's; every shard is a main thread here).
                let (sys, user) = cpu_times(libc::RUSAGE_THREAD);
                field(o, "used_cpu_sys_main_thread", format!("{sys:.6}"));
                field(o, "used_cpu_user_main_thread", format!("{user:.6}"));
            }
            "modules" => o.push_str("# Modules\r\n"),
            "errorstats" => {
                o.push_str("# Errorstats\r\n");
                let mut all: std::collections::BTreeMap<&str, u64> = Default::default();
                for (_, s) in stats {
                    for (code, n) in &s.errorstats {
                        *all.entry(code.as_str()).or_default() += n;
                    }
                }
                for (code, n) in all {
                    field(o, &format!("errorstat_{code}"), format!("count={n}"));
                }
            }
            "latencystats" => {
                o.push_str("# Latencystats\r\n");
                let ps: Vec<f64> = shared
                    .config
                    .get("latency-tracking-info-percentiles")
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect();
                let mut all: std::collections::BTreeMap<&str, shards::latency::Histogram<u64>> =
                    Default::default();
                for (_, s) in stats {
                    for (name, h) in &s.latency {
                        match all.get_mut(name.as_str()) {
                            Some(mine) => {
                                let _ = mine.add(h);
                            }
                            None => {
                                all.insert(name, h.clone());
                            }
                        }
                    }
                }
                for (name, h) in all {
                    field(
                        o,
                        &format!("latency_percentiles_usec_{name}"),
                        shards::latency::percentiles(&h, &ps),
                    );
                }
            }
            "cluster" => {
                o.push_str("# Cluster\r\n");
                field(
                    o,
                    "cluster_enabled",
                    (crate::cluster::mode() != crate::cluster::Mode::Off) as u8,
                );
            }
            "commandstats" => {
                o.push_str("# Commandstats\r\n");
                let mut all: std::collections::BTreeMap<String, shards::shard::CmdStat> =
                    Default::default();
                for (_, s) in stats {
                    for (name, c) in &s.cmd {
                        let e = all.entry(name.clone()).or_default();
                        e.calls += c.calls;
                        e.ticks += c.ticks;
                        e.rejected_calls += c.rejected_calls;
                        e.failed_calls += c.failed_calls;
                    }
                }
                for (name, c) in all {
                    let per = if c.calls > 0 {
                        crate::clock::to_us(c.ticks) as f64 / c.calls as f64
                    } else {
                        0.0
                    };
                    field(
                        o,
                        &format!("cmdstat_{name}"),
                        format!("calls={},usec={},usec_per_call={per:.2},rejected_calls={},failed_calls={}", c.calls, crate::clock::to_us(c.ticks), c.rejected_calls, c.failed_calls),
                    );
                }
            }
            "keyspace" => {
                o.push_str("# Keyspace\r\n");
                let mut dbs = [(0usize, 0u64); shards::limits::DATABASES];
                for (_, s) in stats {
                    for &(db, keys, expires) in &s.keys {
                        dbs[db].0 += keys;
                        dbs[db].1 += expires;
                    }
                }
                for (i, (keys, expires)) in dbs.iter().enumerate() {
                    if *keys > 0 {
                        field(
                            o,
                            &format!("db{i}"),
                            format!("keys={keys},expires={expires},avg_ttl=0"),
                        );
                    }
                }
            }
            "shards" => {
                o.push_str("# Shards\r\n");
                for (id, s) in stats {
                    let keys: usize = s.keys.iter().map(|k| k.1).sum();
                    field(
                        o,
                        &format!("shard{id}"),
                        format!(
                            "keys={keys},memory={},commands={},ops_per_sec={},clients={},hops_out={}",
                            s.memory, s.commands, s.rates.0 as u64, s.connected_clients, s.hops_out
                        ),
                    );
                }
            }
            _ => {}
        }
    }
    out
}

/// Bytes of physical memory the machine has.
fn total_system_memory() -> u64 {
    // SAFETY: sysconf only reads system parameters.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages.max(0) as u64).saturating_mul(page.max(0) as u64)
}

/// INFO memory: Redis 7.0's fields in its order. There is one Lua state per shard, serving
/// both EVAL and functions, so its bytes are all reported under the eval VM; what has no
/// counterpart here (replica clients, replication buffers, cluster links, lazy freeing,
/// active defrag) is 0.
fn memory(o: &mut String, shared: &Shared, stats: &[(usize, ShardStats)]) {
    use crate::memory::{ratio, Breakdown};
    let m = Breakdown::measure(shared, stats);
    let a = &m.alloc;
    let used = a.allocated;
    let pct = |x: f64| format!("{x:.2}%");
    let two = |x: f64| format!("{x:.2}");
    o.push_str("# Memory\r\n");
    field(o, "used_memory", used);
    field(o, "used_memory_human", human(used));
    field(o, "used_memory_rss", m.rss);
    field(o, "used_memory_rss_human", human(m.rss));
    field(o, "used_memory_peak", m.peak);
    field(o, "used_memory_peak_human", human(m.peak));
    field(o, "used_memory_peak_perc", pct(ratio(used, m.peak) * 100.0));
    field(o, "used_memory_overhead", m.overhead());
    field(o, "used_memory_startup", m.startup);
    field(o, "used_memory_dataset", m.dataset());
    field(o, "used_memory_dataset_perc", pct(m.dataset_percent()));
    field(o, "allocator_allocated", a.allocated);
    field(o, "allocator_active", a.active);
    field(o, "allocator_resident", a.resident);
    let total = total_system_memory();
    field(o, "total_system_memory", total);
    field(o, "total_system_memory_human", human(total));
    field(o, "used_memory_lua", m.lua);
    field(o, "used_memory_vm_eval", m.lua);
    field(o, "used_memory_lua_human", human(m.lua));
    field(o, "used_memory_scripts_eval", m.scripts.1);
    field(o, "number_of_cached_scripts", m.scripts.0);
    field(o, "number_of_functions", m.functions.1);
    field(o, "number_of_libraries", m.functions.0);
    field(o, "used_memory_vm_functions", 0);
    field(o, "used_memory_vm_total", m.lua);
    field(o, "used_memory_vm_total_human", human(m.lua));
    field(o, "used_memory_functions", m.functions.2);
    let scripts = m.scripts.1 + m.functions.2;
    field(o, "used_memory_scripts", scripts);
    field(o, "used_memory_scripts_human", human(scripts));
    let maxmem: u64 = shared.config.get("maxmemory").parse().unwrap_or(0);
    field(o, "maxmemory", maxmem);
    field(o, "maxmemory_human", human(maxmem));
    field(o, "maxmemory_policy", shared.config.get("maxmemory-policy"));
    field(o, "allocator_frag_ratio", two(ratio(a.active, a.allocated)));
    field(
        o,
        "allocator_frag_bytes",
        a.active.saturating_sub(a.allocated),
    );
    field(o, "allocator_rss_ratio", two(ratio(a.resident, a.active)));
    field(
        o,
        "allocator_rss_bytes",
        a.resident.saturating_sub(a.active),
    );
    field(o, "rss_overhead_ratio", two(ratio(m.rss, a.resident)));
    field(o, "rss_overhead_bytes", m.rss as i64 - a.resident as i64);
    field(o, "mem_fragmentation_ratio", two(ratio(m.rss, used)));
    field(o, "mem_fragmentation_bytes", m.rss as i64 - used as i64);
    field(o, "mem_not_counted_for_evict", m.aof_buffer);
    field(o, "mem_replication_backlog", 0);
    field(o, "mem_total_replication_buffers", 0);
    field(o, "mem_clients_slaves", 0);
    field(o, "mem_clients_normal", m.clients);
    field(o, "mem_cluster_links", 0);
    field(o, "mem_aof_buffer", m.aof_buffer);
    field(o, "mem_allocator", "jemalloc-5.3.0");
    field(o, "active_defrag_running", 0);
    field(o, "lazyfree_pending_objects", 0);
    field(o, "lazyfreed_objects", 0);
}

/// INFO persistence, Redis 7.0's fields (fork-related ones report no fork: there is none).
fn persistence(o: &mut String, shared: &Shared, stats: &[(usize, ShardStats)]) {
    use std::sync::atomic::Ordering::Relaxed;
    let st = &shared.persist;
    let now_ms = crate::ctx::now_us() / 1000;
    o.push_str("# Persistence\r\n");
    field(o, "loading", 0);
    field(o, "async_loading", 0);
    field(o, "current_cow_peak", 0);
    field(o, "current_cow_size", 0);
    field(o, "current_cow_size_age", 0);
    field(o, "current_fork_perc", "0.00");
    field(o, "current_save_keys_processed", 0);
    field(o, "current_save_keys_total", 0);
    field(o, "rdb_changes_since_last_save", st.changes_since_save());
    let bgsave = st.bgsave_running();
    field(o, "rdb_bgsave_in_progress", bgsave as u8);
    field(o, "rdb_last_save_time", st.lastsave.load(Relaxed));
    let ok = |b: bool| if b { "ok" } else { "err" };
    field(
        o,
        "rdb_last_bgsave_status",
        ok(st.bgsave.last_ok.load(Relaxed)),
    );
    field(
        o,
        "rdb_last_bgsave_time_sec",
        st.bgsave.last_secs.load(Relaxed),
    );
    let running_secs = |started: u64| (now_ms.saturating_sub(started) / 1000) as i64;
    field(
        o,
        "rdb_current_bgsave_time_sec",
        if bgsave {
            running_secs(st.bgsave.started_ms.load(Relaxed))
        } else {
            -1
        },
    );
    field(o, "rdb_saves", st.rdb_saves.load(Relaxed));
    field(o, "rdb_last_cow_size", 0);
    field(o, "rdb_last_load_keys_expired", 0);
    field(o, "rdb_last_load_keys_loaded", 0);
    let aofs: Vec<(u64, u64, u64, bool)> = stats.iter().filter_map(|(_, s)| s.aof).collect();
    field(o, "aof_enabled", (!aofs.is_empty()) as u8);
    let rewriting = st.rewrite_running();
    field(o, "aof_rewrite_in_progress", rewriting as u8);
    field(
        o,
        "aof_rewrite_scheduled",
        st.rewrite_scheduled.load(Relaxed) as u8,
    );
    field(
        o,
        "aof_last_rewrite_time_sec",
        st.rewrite.last_secs.load(Relaxed),
    );
    field(
        o,
        "aof_current_rewrite_time_sec",
        if rewriting {
            running_secs(st.rewrite.started_ms.load(Relaxed))
        } else {
            -1
        },
    );
    field(
        o,
        "aof_last_bgrewrite_status",
        ok(st.rewrite.last_ok.load(Relaxed)),
    );
    field(o, "aof_rewrites", st.aof_rewrites.load(Relaxed));
    field(o, "aof_rewrites_consecutive_failures", 0);
    field(o, "aof_last_write_status", ok(aofs.iter().all(|a| a.3)));
    field(o, "aof_last_cow_size", 0);
    field(o, "module_fork_in_progress", 0);
    field(o, "module_fork_last_cow_size", 0);
    if !aofs.is_empty() {
        field(o, "aof_current_size", aofs.iter().map(|a| a.0).sum::<u64>());
        field(o, "aof_base_size", aofs.iter().map(|a| a.1).sum::<u64>());
        field(o, "aof_pending_rewrite", 0);
        field(
            o,
            "aof_buffer_length",
            aofs.iter().map(|a| a.2).sum::<u64>(),
        );
        field(o, "aof_pending_bio_fsync", 0);
        field(o, "aof_delayed_fsync", 0);
    }
}
