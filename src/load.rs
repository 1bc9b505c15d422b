//! Loading at start-up, before the shards start: the AOF if `appendonly` is on and one exists
//! (as Redis, it takes precedence), else the newest complete set of shard RDB files, else a
//! single `dbfilename` (Redis's own `dump.rdb`). Keys go to the shard that owns their slot, so
//! files written with another shard count, or by Redis, are re-spread. Shards load in parallel.
//!
//! **Cross-shard transactions in the AOF.** A transaction's part is logged on each participant
//! as `MULTI … EXEC <txid> <participants>`. Every AOF rewrite starts all shards' new
//! incremental files at one cut of the transaction order (`crate::save`), so a transaction is
//! in the last incremental file of all its participants or of none. On load, a transaction
//! found there is applied only if every participant's last incremental file holds it: one that
//! a crash cut short was never acknowledged, and it is dropped everywhere.

use crate::config::Config;
use crate::persist::{self, Manifest};
use anyhow::{bail, Context};
use shards::keyspace::{Db, Entry};
use shards::rdb::file::{FileReader, KeyClock};
use shards::script::Store;
use shards::shard::ShardConfig;
use shards::Shard;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a shard starts with.
pub struct Start {
    pub dbs: Vec<Db>,
    /// The AOF to append to (when `appendonly` is on).
    pub aof: Option<AofStart>,
    /// The search index definitions loaded (`search::Indexes::encode`), the same for all.
    pub search: Vec<u8>,
}

pub struct AofStart {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub incr: PathBuf,
    pub base_size: u64,
}

/// The engine settings that decide encodings, from the configuration.
pub fn shard_config(cfg: &Config) -> ShardConfig {
    let n = |name: &str| cfg.get_i64(name).max(0) as usize;
    ShardConfig {
        list_max_listpack_size: cfg.get_i64("list-max-listpack-size"),
        hash_max_listpack_entries: n("hash-max-listpack-entries"),
        hash_max_listpack_value: n("hash-max-listpack-value"),
        set_max_intset_entries: n("set-max-intset-entries"),
        zset_max_listpack_entries: n("zset-max-listpack-entries"),
        zset_max_listpack_value: n("zset-max-listpack-value"),
        hll_sparse_max_bytes: n("hll-sparse-max-bytes"),
        stream: shards::types::stream::Limits {
            node_max_bytes: n("stream-node-max-bytes"),
            node_max_entries: n("stream-node-max-entries"),
        },
        busy_reply_threshold_ms: cfg.get_i64("busy-reply-threshold").max(0) as u64,
        memory: shards::evict::MemoryConfig {
            maxmemory: cfg.get_i64("maxmemory").max(0) as u64,
            policy: shards::evict::Policy::parse(&cfg.get("maxmemory-policy")).unwrap_or_default(),
            samples: n("maxmemory-samples"),
            tenacity: n("maxmemory-eviction-tenacity") as u32,
            lfu_log_factor: n("lfu-log-factor").min(u32::MAX as usize) as u32,
            lfu_decay_time: n("lfu-decay-time").min(u32::MAX as usize) as u32,
        },
        ..ShardConfig::default()
    }
}

pub use shards::slot::shard_of;

fn now_ms() -> u64 {
    crate::ctx::now_us() / 1000
}

fn empty_dbs() -> Vec<Db> {
    (0..shards::limits::DATABASES)
        .map(|_| Db::default())
        .collect()
}

/// Loads the data for `n` shards and prepares their AOFs.
/// `scripts` receives the function libraries the files hold.
pub fn load(cfg: &Config, n: usize, scripts: &Arc<Store>) -> anyhow::Result<Vec<Start>> {
    let dir = PathBuf::from(cfg.get("dir"));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let appendonly = cfg.get("appendonly") == "yes";
    let dirname = cfg.get("appenddirname");
    let fname = cfg.get("appendfilename");
    let scfg = shard_config(cfg);
    let started = std::time::Instant::now();

    let aof_sets = persist::aof_sets(&dir, &dirname, &fname);
    let mut from_aof = false;
    // Transactions were dropped as incomplete: their parts stay in the files, so the AOF is
    // made afresh from what was loaded (a later rewrite could otherwise compact a file on one
    // shard and leave another shard's part looking complete).
    let mut dropped = false;
    let mut search = Vec::new();
    let dbs: Vec<Vec<Db>> = if appendonly && !aof_sets.is_empty() {
        let m = if aof_sets.contains(&n) {
            n
        } else {
            aof_sets[0]
        };
        from_aof = true;
        let truncate_ok = cfg.get("aof-load-truncated") == "yes";
        let (loaded, was_dropped, defs) =
            load_aof_set(&dir, &dirname, &fname, m, &scfg, truncate_ok, scripts)?;
        dropped = was_dropped;
        search = defs;
        if m == n {
            loaded
        } else {
            crate::log!("Re-spreading the AOF of {m} shard(s) over {n} shard(s)");
            respread(loaded, n)
        }
    } else {
        let sets = persist::rdb_sets(&dir, &cfg.get("dbfilename"));
        let dbfilename = cfg.get("dbfilename");
        let single = dir.join(&dbfilename);
        if let Some(&m) = sets.first() {
            let files: Vec<PathBuf> = (0..m)
                .map(|i| dir.join(persist::shard_rdb_name(&dbfilename, i, m)))
                .collect();
            let (d, s) = load_rdb_files(&files, n, m == n, &scfg, scripts)?;
            search = s;
            d
        } else if single.exists() {
            let (d, s) = load_rdb_files(&[single], n, false, &scfg, scripts)?;
            search = s;
            d
        } else {
            (0..n).map(|_| empty_dbs()).collect()
        }
    };
    let keys: usize = dbs.iter().flatten().map(|d| d.len()).sum();
    if keys > 0 {
        crate::log!(
            "DB loaded from {}: {:.3} seconds ({keys} keys)",
            if from_aof { "append only file" } else { "disk" },
            started.elapsed().as_secs_f64()
        );
    }

    // Every shard starts with these definitions, and new files carry them.
    shards::search::publish(search.clone());
    // The AOF for this shard count: kept if it was loaded as is, else made from the data now.
    let mut starts = Vec::with_capacity(n);
    // New files take sequence numbers above every shard's, the same on all shards (loading
    // relies on incremental files of one number starting at one cut).
    let seq = (0..n)
        .filter_map(|i| {
            let sdir = persist::shard_aof_dir(&dir, &dirname, i, n);
            std::fs::read_to_string(sdir.join(persist::manifest_name(&fname))).ok()
        })
        .filter_map(|t| Manifest::parse(&t).ok())
        .map(|m| m.next_incr_seq().max(m.next_base_seq()))
        .max()
        .unwrap_or(1);
    let mut made = Vec::new();
    for (i, d) in dbs.into_iter().enumerate() {
        let mut aof = None;
        if appendonly {
            let sdir = persist::shard_aof_dir(&dir, &dirname, i, n);
            if from_aof && aof_sets.contains(&n) && !dropped {
                aof = Some(open_existing(&sdir, &fname)?);
            } else {
                made.push(create_aof(&sdir, &fname, &d, seq, scripts)?);
            }
        }
        starts.push(Start {
            dbs: d,
            aof,
            search: search.clone(),
        });
    }
    commit_aofs(&made, &fname)?;
    if !made.is_empty() {
        for (s, (a, _)) in starts.iter_mut().zip(made) {
            s.aof = Some(a);
        }
    }
    if appendonly {
        // Sets of other shard counts are superseded by the one just made.
        for m in persist::aof_sets(&dir, &dirname, &fname) {
            if m != n {
                let _ = std::fs::remove_dir_all(dir.join(&dirname).join(format!("shard-0-of-{m}")));
                for i in 1..m {
                    let _ = std::fs::remove_dir_all(persist::shard_aof_dir(&dir, &dirname, i, m));
                }
            }
        }
    }
    Ok(starts)
}

/// Reads RDB files into `n` shards' databases. With `direct`, file `i` is shard `i`'s own;
/// otherwise every shard reads every file and keeps the keys of its slots.
fn load_rdb_files(
    files: &[PathBuf],
    n: usize,
    direct: bool,
    scfg: &ShardConfig,
    scripts: &Arc<Store>,
) -> anyhow::Result<(Vec<Vec<Db>>, Vec<u8>)> {
    let now = now_ms();
    let contents: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).with_context(|| format!("reading {}", f.display())))
        .collect::<anyhow::Result<_>>()?;
    let loaded = in_parallel(n, |i| {
        let mut search = None;
        let mut dbs = empty_dbs();
        let mine: Vec<usize> = if direct {
            vec![i]
        } else {
            (0..contents.len()).collect()
        };
        for f in mine {
            let s = read_rdb_into(
                &contents[f],
                &files[f],
                &mut dbs,
                scfg,
                now,
                Some(scripts),
                |k| direct || shard_of(k, n) == i,
            )?;
            search = search.or(s);
        }
        Ok((dbs, search))
    })?;
    let search = loaded
        .iter()
        .find_map(|(_, s)| s.clone())
        .unwrap_or_default();
    Ok((loaded.into_iter().map(|(d, _)| d).collect(), search))
}

/// Runs `job(i)` for every `i < n`, each on its own thread; the results in order.
fn in_parallel<T: Send>(
    n: usize,
    job: impl Fn(usize) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<T>> {
    std::thread::scope(|s| {
        let job = &job;
        let handles: Vec<_> = (0..n).map(|i| s.spawn(move || job(i))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a loading thread panicked"))?
            })
            .collect()
    })
}

/// Adds the keys of one RDB file that `keep` accepts to `dbs` (expired ones are dropped).
pub fn read_rdb_into(
    data: &[u8],
    path: &Path,
    dbs: &mut [Db],
    scfg: &ShardConfig,
    now: u64,
    scripts: Option<&Store>,
    keep: impl Fn(&[u8]) -> bool,
) -> anyhow::Result<Option<Vec<u8>>> {
    let name = path.display();
    let mut r = FileReader::new(data).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    // Under an LRU or LFU policy the keys' clocks come from the file (Redis's IDLE / FREQ).
    let kind = scfg.memory.policy.clock_kind();
    if kind.is_some() {
        for db in dbs.iter_mut() {
            if db.clocks().map(|c| c.kind) != kind {
                db.set_clocks(&scfg.memory, kind, now);
            }
            if let Some(c) = db.clocks_mut() {
                c.now_ms = now;
            }
        }
    }
    while let Some(e) = r.next_entry().map_err(|e| anyhow::anyhow!("{name}: {e}"))? {
        if !keep(&e.key) || e.expire_ms.is_some_and(|t| t <= now) {
            continue;
        }
        let Some(db) = dbs.get_mut(e.db) else {
            bail!(
                "{name}: key at offset {} is in database {}, beyond the {} databases",
                e.offset,
                e.db,
                shards::limits::DATABASES
            );
        };
        let value = e.decode(scfg).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        db.insert(&e.key, Entry::with_expiry(value, e.expire_ms));
        match e.clock {
            Some(KeyClock::Idle(secs)) => {
                db.set_restored_clock(&e.key, Some(secs.min(i64::MAX as u64) as i64), None)
            }
            Some(KeyClock::Freq(f)) => db.set_restored_clock(&e.key, None, Some(f as i64)),
            None => {}
        }
    }
    if let Some(scripts) = scripts {
        shards::script::function::load_from_rdb(scripts, r.functions())
            .map_err(|e| anyhow::anyhow!("{name}: function library: {}", e.text()))?;
    }
    Ok(r.aux_get(shards::rdb::file::SEARCH_AUX).map(|v| v.to_vec()))
}

/// Moves every key to the shard of its slot among `n`.
fn respread(old: Vec<Vec<Db>>, n: usize) -> Vec<Vec<Db>> {
    let mut new: Vec<Vec<Db>> = (0..n).map(|_| empty_dbs()).collect();
    let now = now_ms();
    for dbs in old {
        for (i, db) in dbs.iter().enumerate() {
            db.for_each_key(now, |k, item, t| {
                new[shard_of(k, n)][i].insert(k, Entry::with_expiry(item.value.clone(), t));
            });
        }
    }
    new
}

/// One old shard's AOF files, read.
struct AofFiles {
    base: Option<(PathBuf, Vec<u8>)>,
    /// (sequence number, path, contents).
    incrs: Vec<(u64, PathBuf, Vec<u8>)>,
}

fn read_aof_dir(dir: &Path, fname: &str) -> anyhow::Result<AofFiles> {
    let mpath = dir.join(persist::manifest_name(fname));
    let text = std::fs::read_to_string(&mpath)
        .with_context(|| format!("reading the AOF manifest {}", mpath.display()))?;
    let manifest =
        Manifest::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", mpath.display()))?;
    let read = |name: &str| -> anyhow::Result<(PathBuf, Vec<u8>)> {
        let p = dir.join(name);
        let data = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        Ok((p, data))
    };
    let base = manifest.base.as_ref().map(|f| read(&f.name)).transpose()?;
    let incrs = manifest
        .incrs
        .iter()
        .map(|f| read(&f.name).map(|(p, d)| (f.seq, p, d)))
        .collect::<anyhow::Result<_>>()?;
    Ok(AofFiles { base, incrs })
}

/// The transactions (by id) whose `EXEC` record the bytes hold, with their participants.
fn tx_records(bytes: &[u8]) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for e in shards::aof::Reader::new(bytes) {
        let Ok(shards::aof::Entry::Transaction { exec, .. }) = e else {
            continue;
        };
        if let Some((id, parts)) = parse_exec(&exec.argv[1..]) {
            out.push((id, parts));
        }
    }
    out
}

/// `EXEC <txid> <participants>` arguments: the id and the participant shards.
fn parse_exec(args: &[&[u8]]) -> Option<(String, Vec<usize>)> {
    let [id, parts] = args else {
        return None;
    };
    let id = String::from_utf8_lossy(id).into_owned();
    let parts = std::str::from_utf8(parts)
        .ok()?
        .split(',')
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<usize>>>()?;
    Some((id, parts))
}

/// Loads the AOF set of `m` shards: (databases, writes replayed) per old shard.
fn load_aof_set(
    dir: &Path,
    dirname: &str,
    fname: &str,
    m: usize,
    scfg: &ShardConfig,
    truncate_ok: bool,
    scripts: &Arc<Store>,
) -> anyhow::Result<(Vec<Vec<Db>>, bool, Vec<u8>)> {
    let files: Vec<AofFiles> = (0..m)
        .map(|i| read_aof_dir(&persist::shard_aof_dir(dir, dirname, i, m), fname))
        .collect::<anyhow::Result<_>>()?;
    // Which transactions are complete on every participant. Rewrites start every shard's
    // incremental file of one sequence number at the same cut, so a transaction logged in
    // file k of one shard belongs in file k of each participant — unless that participant
    // has compacted file k into its base already (a crash between the shards' ends of a
    // rewrite), which then holds it.
    let mut seen: HashMap<(u64, String), (Vec<usize>, HashSet<usize>)> = HashMap::new();
    for (i, f) in files.iter().enumerate() {
        for (seq, _, data) in &f.incrs {
            for (id, parts) in tx_records(data) {
                let e = seen
                    .entry((*seq, id))
                    .or_insert_with(|| (parts, HashSet::new()));
                e.1.insert(i);
            }
        }
    }
    let first_seq: Vec<u64> = files
        .iter()
        .map(|f| f.incrs.first().map_or(u64::MAX, |(seq, _, _)| *seq))
        .collect();
    let complete: HashSet<(u64, String)> = seen
        .into_iter()
        .filter(|((seq, _), (parts, have))| {
            parts
                .iter()
                .all(|&p| p >= m || have.contains(&p) || *seq < first_seq[p])
        })
        .map(|(k, _)| k)
        .collect();
    let now = now_ms();
    let loaded = in_parallel(files.len(), |i| {
        load_one_aof(&files[i], scfg, now, &complete, truncate_ok, scripts)
    })?;
    let dropped = loaded.iter().any(|(_, d, _)| *d);
    // Shard 0 saw every FT.* definition command (they run on all shards).
    let search = loaded
        .first()
        .map(|(_, _, s)| s.clone())
        .unwrap_or_default();
    Ok((
        loaded.into_iter().map(|(dbs, _, _)| dbs).collect(),
        dropped,
        search,
    ))
}

fn load_one_aof(
    f: &AofFiles,
    scfg: &ShardConfig,
    now: u64,
    complete: &HashSet<(u64, String)>,
    truncate_ok: bool,
    scripts: &Arc<Store>,
) -> anyhow::Result<(Vec<Db>, bool, Vec<u8>)> {
    let mut shard = Shard::new(0, 1, 0);
    shard.config = scfg.clone();
    // FT.* commands in the log keep their definitions; the serving shard builds the data.
    shard.search.dormant = true;
    // FUNCTION commands in the log load into the process's libraries.
    shard.scripts = scripts.clone();
    if let Some((path, data)) = &f.base {
        if data.starts_with(b"REDIS") {
            let defs = read_rdb_into(data, path, &mut shard.dbs, scfg, now, Some(scripts), |_| {
                true
            })?;
            shard.search.decode(&defs.unwrap_or_default());
        } else {
            replay_file(&mut shard, path, data, None, false, truncate_ok)?;
        }
    }
    let mut dropped = false;
    let last = f.incrs.len().saturating_sub(1);
    for (i, (seq, path, data)) in f.incrs.iter().enumerate() {
        let r = replay_file(
            &mut shard,
            path,
            data,
            Some((*seq, complete)),
            i == last,
            truncate_ok,
        )?;
        dropped |= r.skipped > 0;
    }
    Ok((shard.dbs, dropped, shard.search.encode()))
}

/// Replays one AOF file; a torn tail of the last file is truncated (`aof-load-truncated`).
fn replay_file(
    shard: &mut Shard,
    path: &Path,
    data: &[u8],
    complete: Option<(u64, &HashSet<(u64, String)>)>,
    last: bool,
    truncate_ok: bool,
) -> anyhow::Result<shards::aof::Replayed> {
    let name = path.display();
    // What replayed commands record as the time in values (seen times of consumers).
    shard.load_clock_ms = now_ms();
    let r = shards::aof::replay(shard, data, |exec_args| {
        match (parse_exec(exec_args), complete) {
            (Some((id, _)), Some((seq, complete))) => complete.contains(&(seq, id)),
            _ => true,
        }
    })
    .map_err(|e| anyhow::anyhow!("Bad file format reading the append only file {name}: {e}"))?;
    if let Some(f) = r.failed.first() {
        bail!(
            "{name}: the command at offset {} failed while loading: {}",
            f.offset,
            f.error
        );
    }
    if r.skipped > 0 {
        crate::log!(
            "{name}: {} cross-shard transaction(s) not logged on every participant were dropped",
            r.skipped
        );
    }
    if r.torn {
        if !(last && truncate_ok) {
            bail!(
                "Unexpected end of file reading the append only file {name} at offset {}. \
                 Use redis-check-aof --fix, or set aof-load-truncated yes",
                r.end
            );
        }
        crate::log!(
            "!!! Warning: short read while loading the AOF file {name}!!! AOF loaded anyway \
             because aof-load-truncated is enabled; truncating it to {} bytes",
            r.end
        );
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("opening {name} to truncate it"))?;
        file.set_len(r.end as u64)
            .and_then(|_| file.sync_all())
            .with_context(|| format!("truncating {name}"))?;
    }
    Ok(r)
}

/// Continues an AOF loaded as is: appends go to its last incremental file.
fn open_existing(sdir: &Path, fname: &str) -> anyhow::Result<AofStart> {
    let mpath = sdir.join(persist::manifest_name(fname));
    let text = std::fs::read_to_string(&mpath)?;
    let mut manifest =
        Manifest::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", mpath.display()))?;
    if manifest.incrs.is_empty() {
        let seq = manifest.next_incr_seq();
        manifest.incrs.push(persist::ManifestFile {
            name: persist::incr_name(fname, seq),
            seq,
            kind: 'i',
        });
        std::fs::File::create(sdir.join(persist::incr_name(fname, seq)))?;
        persist::write_atomic(&mpath, manifest.render().as_bytes())?;
    }
    let incr = sdir.join(
        manifest
            .incrs
            .last()
            .map(|f| f.name.clone())
            .unwrap_or_default(),
    );
    let base_size = manifest
        .base
        .as_ref()
        .and_then(|b| std::fs::metadata(sdir.join(&b.name)).ok())
        .map_or(0, |m| m.len());
    Ok(AofStart {
        dir: sdir.to_path_buf(),
        manifest,
        incr,
        base_size,
    })
}

/// Starts a shard's AOF from its data: a base holding it, an empty incremental file, and
/// the manifest naming them (written last, atomically).
/// Starts a shard's AOF from its data: a base holding it and an empty incremental file, both
/// numbered `seq`. The manifest naming them is written by [`commit_aofs`], once every shard's
/// files are ready. Returns the shard's AOF and the manifest it replaces.
fn create_aof(
    sdir: &Path,
    fname: &str,
    dbs: &[Db],
    seq: u64,
    scripts: &Store,
) -> anyhow::Result<(AofStart, Option<Manifest>)> {
    std::fs::create_dir_all(sdir).with_context(|| format!("creating {}", sdir.display()))?;
    let old = std::fs::read_to_string(sdir.join(persist::manifest_name(fname)))
        .ok()
        .and_then(|t| Manifest::parse(&t).ok());
    let base = persist::base_name(fname, seq);
    let incr = persist::incr_name(fname, seq);
    let aux = shards::rdb::file::Aux {
        ctime_s: now_ms() / 1000,
        used_mem: 0,
        aof_base: true,
        search: shards::search::published(),
    };
    let functions = shards::script::function::codes(scripts);
    let bytes = shards::rdb::file::save(&functions, dbs, now_ms(), &aux);
    persist::write_atomic(&sdir.join(&base), &bytes)
        .with_context(|| format!("writing {}", sdir.join(&base).display()))?;
    let f = std::fs::File::create(sdir.join(&incr))?;
    f.sync_all()?;
    let manifest = Manifest {
        base: Some(persist::ManifestFile {
            name: base,
            seq,
            kind: 'b',
        }),
        incrs: vec![persist::ManifestFile {
            name: incr.clone(),
            seq,
            kind: 'i',
        }],
    };
    let start = AofStart {
        dir: sdir.to_path_buf(),
        manifest,
        incr: sdir.join(incr),
        base_size: bytes.len() as u64,
    };
    Ok((start, old))
}

/// Writes the manifests of AOFs made by [`create_aof`] (one after another, as late as possible:
/// until then the old files are what loads), then removes the files they replace.
fn commit_aofs(made: &[(AofStart, Option<Manifest>)], fname: &str) -> anyhow::Result<()> {
    for (a, _) in made {
        let mpath = a.dir.join(persist::manifest_name(fname));
        persist::write_atomic(&mpath, a.manifest.render().as_bytes())
            .with_context(|| format!("writing {}", mpath.display()))?;
    }
    for (a, old) in made {
        let current: Vec<&str> = a
            .manifest
            .base
            .iter()
            .chain(&a.manifest.incrs)
            .map(|f| f.name.as_str())
            .collect();
        for f in old.iter().flat_map(|m| m.base.iter().chain(&m.incrs)) {
            if !current.contains(&f.name.as_str()) {
                let _ = std::fs::remove_file(a.dir.join(&f.name));
            }
        }
    }
    Ok(())
}
