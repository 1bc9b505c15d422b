//! shardis-bench: a load generator for shardis and Redis, in the style of redis-benchmark and
//! memtier. Any mix of commands, pipelined over many connections and threads, with uniform,
//! Zipf or sequential keys; latency percentiles from HDR histograms, per command, as a table
//! and as JSON; `--verify` checks every reply against a model of the client's own keys, and
//! `--cluster` sends each command straight to the node owning its slot.
//!
//! Exit status: 0 when the run completed; 1 when a connection failed, or, with `--verify`,
//! when any reply was an error or not what the model expected; 2 for bad options.

mod cluster;
mod driver;
mod keys;
mod report;
mod resp;
mod workload;

use clap::Parser;
use cluster::SlotMap;
use driver::{Plan, Progress};
use keys::{KeyGen, Pattern};
use rand::rngs::StdRng;
use rand::SeedableRng;
use report::{json_string, Stats};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use workload::{Generator, Mix, Settings};

/// The most clients and threads a run may have.
const CLIENTS_MAX: usize = 10_000;
const THREADS_MAX: usize = 256;
/// The largest value `--data-size` accepts (bytes).
const DATA_SIZE_MAX: usize = 64 * 1024 * 1024;
/// The largest pipeline.
const PIPELINE_MAX: usize = 100_000;
/// Requests sent when neither `-n` nor `--duration` is given.
const REQUESTS_DEFAULT: u64 = 100_000;

/// A value size: fixed (`100`) or a range (`10-1000`), in bytes.
#[derive(Debug, Clone, Copy)]
struct DataSize(usize, usize);

impl std::str::FromStr for DataSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let num = |x: &str| {
            x.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad size {x:?}"))
        };
        let (lo, hi) = match s.split_once('-') {
            Some((lo, hi)) => (num(lo)?, num(hi)?),
            None => (num(s)?, num(s)?),
        };
        if lo > hi || hi > DATA_SIZE_MAX {
            return Err(format!("sizes go from 0 to {DATA_SIZE_MAX}, low to high"));
        }
        Ok(DataSize(lo, hi))
    }
}

/// Load generator for shardis and Redis (redis-benchmark / memtier style options).
#[derive(Parser, Debug)]
#[command(name = "shardis-bench", version, disable_help_flag = true)]
struct Options {
    /// Server host (the seed node in cluster mode).
    #[arg(short = 'h', long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(short = 'p', long, default_value_t = 6379)]
    port: u16,
    /// Connections (clients) in all.
    #[arg(short = 'c', long, default_value_t = 50)]
    clients: usize,
    /// Requests each client sends before reading their replies.
    #[arg(short = 'P', long, default_value_t = 1)]
    pipeline: usize,
    /// Requests in all (after the warm-up) [default: 100000].
    #[arg(short = 'n', long, conflicts_with = "duration")]
    requests: Option<u64>,
    /// Run this many seconds (after the warm-up) instead of a request count.
    #[arg(long)]
    duration: Option<f64>,
    /// Threads driving the clients.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Number of distinct keys of each kind.
    #[arg(long, default_value_t = 100_000)]
    keyspace: u64,
    /// Key distribution: uniform, zipf:<s> or sequential.
    #[arg(long, default_value = "uniform")]
    key_pattern: Pattern,
    /// Value size in bytes: <n> or <min>-<max>.
    #[arg(short = 'd', long, default_value = "3")]
    data_size: DataSize,
    /// Command mix with weights: get, set, incr, hset, hget, lpush, rpop, zadd, zrange,
    /// mget:<keys>, mset:<keys>, publish; e.g. get:9,set:1 or mget:10:1,mset:10:1.
    #[arg(long, alias = "ratio", default_value = "set:1,get:1")]
    mix: Mix,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Write the report as JSON to this file ("-" for standard output).
    #[arg(long)]
    json: Option<String>,
    /// Seed of every random choice (printed when chosen at random).
    #[arg(long)]
    seed: Option<u64>,
    /// Check every reply: each client reads back its own keys; any error or mismatch fails
    /// the run.
    #[arg(long)]
    verify: bool,
    /// Read CLUSTER SLOTS and send each command to the node owning its slot.
    #[arg(long)]
    cluster: bool,
    /// No progress line.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

impl Options {
    fn check(&self) -> Result<(), String> {
        let within = |what: &str, v: usize, max: usize| {
            if v == 0 || v > max {
                Err(format!("{what} must be 1 to {max}"))
            } else {
                Ok(())
            }
        };
        within("--clients", self.clients, CLIENTS_MAX)?;
        within("--threads", self.threads, THREADS_MAX)?;
        within("--pipeline", self.pipeline, PIPELINE_MAX)?;
        if self.keyspace == 0 || self.keyspace > u32::MAX as u64 {
            return Err("--keyspace must be 1 to 2^32-1".into());
        }
        let secs_ok = |s: f64| (0.0..1e7).contains(&s);
        if !secs_ok(self.warmup) || !self.duration.is_none_or(|d| secs_ok(d) && d > 0.0) {
            return Err("--warmup and --duration take seconds (duration above 0)".into());
        }
        Ok(())
    }

    fn settings_json(&self, seed: u64) -> String {
        let mix: Vec<String> = self
            .mix
            .0
            .iter()
            .map(|(c, w)| format!("{}: {w}", json_string(&c.name())))
            .collect();
        format!(
            "{{\"host\": {}, \"port\": {}, \"clients\": {}, \"pipeline\": {}, \"threads\": {}, \
             \"requests\": {}, \"duration_sec\": {}, \"keyspace\": {}, \"key_pattern\": {}, \
             \"data_size\": [{}, {}], \"mix\": {{{}}}, \"warmup_sec\": {}, \"seed\": {}, \
             \"verify\": {}, \"cluster\": {}}}",
            json_string(&self.host),
            self.port,
            self.clients,
            self.pipeline,
            self.threads,
            self.requests.map_or("null".into(), |n| n.to_string()),
            self.duration.map_or("null".into(), |d| d.to_string()),
            self.keyspace,
            json_string(&self.key_pattern.to_string()),
            self.data_size.0,
            self.data_size.1,
            mix.join(", "),
            self.warmup,
            seed,
            self.verify,
            self.cluster,
        )
    }
}

fn main() {
    let options = Options::parse();
    if let Err(e) = options.check() {
        eprintln!("shardis-bench: {e}");
        std::process::exit(2);
    }
    match run(&options) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("shardis-bench: {e}");
            std::process::exit(1);
        }
    }
}

/// Runs the benchmark and reports; `Ok(false)` when the run failed (see the exit status).
fn run(o: &Options) -> Result<bool, String> {
    let seed = o.seed.unwrap_or_else(rand::random);
    if o.seed.is_none() {
        eprintln!("seed {seed}");
    }
    let seed_addr = format!("{}:{}", o.host, o.port);
    let map = if o.cluster {
        SlotMap::fetch(&seed_addr)?
    } else {
        SlotMap::single(&seed_addr)
    };
    let settings = Settings {
        mix: o.mix.clone(),
        pattern: o.key_pattern.clone(),
        data_size: (o.data_size.0, o.data_size.1),
        verify: o.verify,
        cluster: o.cluster,
    };
    let start = Instant::now();
    let warmup_end = start + Duration::from_secs_f64(o.warmup);
    let quota = o.duration.is_none().then(|| {
        let n = o.requests.unwrap_or(REQUESTS_DEFAULT);
        let c = o.clients as u64;
        (0..c).map(|i| n / c + u64::from(i < n % c)).collect()
    });
    let plan = Plan {
        settings,
        pipeline: o.pipeline,
        quota,
        deadline: o.duration.map(|d| warmup_end + Duration::from_secs_f64(d)),
        warmup_end,
        cluster: o.cluster,
        seed: seed_addr,
        map,
    };
    let per_thread = generators(o, &plan.settings, seed);
    let progress = Progress::default();
    let names: Vec<String> = o.mix.0.iter().map(|(c, _)| c.name()).collect();
    let mut stats = Stats::new(&names);
    std::thread::scope(|scope| {
        let handles: Vec<_> = per_thread
            .into_iter()
            .map(|clients| scope.spawn(|| driver::run(&plan, clients, &progress)))
            .collect();
        show_progress(o, &handles, &progress, start, warmup_end);
        for h in handles {
            match h.join() {
                Ok(s) => stats.merge(&s),
                Err(_) => stats
                    .connection_errors
                    .push("a driver thread panicked".into()),
            }
        }
    });
    let elapsed = Instant::now().saturating_duration_since(warmup_end);
    print!("{}", report::text(&stats, elapsed));
    if let Some(path) = &o.json {
        let text = report::json(&stats, elapsed, &o.settings_json(seed));
        if path == "-" {
            print!("{text}");
        } else {
            std::fs::write(path, text).map_err(|e| format!("writing {path}: {e}"))?;
        }
    }
    let _ = std::io::stdout().flush();
    Ok(judge(o, &stats))
}

/// Each client's request generator, dealt to the threads round-robin. Client `i` draws from
/// its own random stream (the seed mixed with `i`), so a run is reproducible for a given seed
/// and client count; sequential clients start at evenly spaced keys.
fn generators(o: &Options, settings: &Settings, seed: u64) -> Vec<Vec<(usize, Generator)>> {
    let zipf = match o.key_pattern {
        Pattern::Zipf(s) => Some(keys::zipf_cdf(o.keyspace, s)),
        _ => None,
    };
    let mut per_thread: Vec<Vec<_>> = (0..o.threads).map(|_| Vec::new()).collect();
    for id in 0..o.clients {
        let start = id as u64 * o.keyspace / o.clients as u64;
        let keys = KeyGen::new(o.keyspace, zipf.clone(), start);
        let rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        per_thread[id % o.threads].push((id, Generator::new(settings, id, keys, rng)));
    }
    per_thread
}

/// Prints the progress line once a second on standard error until every thread is done.
fn show_progress<T>(
    o: &Options,
    handles: &[std::thread::ScopedJoinHandle<'_, T>],
    progress: &Progress,
    start: Instant,
    warmup_end: Instant,
) {
    let mut last = (Instant::now(), 0);
    let mut next = start + Duration::from_secs(1);
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        if o.quiet || now < next {
            continue;
        }
        next += Duration::from_secs(1);
        let replies = progress.replies.load(Ordering::Relaxed);
        let rate = (replies - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        last = (now, replies);
        let phase = if now < warmup_end { " (warm-up)" } else { "" };
        eprint!(
            "\r{:.0}s: {replies} replies, {rate:.0} req/s, {} errors{phase}   ",
            now.duration_since(start).as_secs_f64(),
            progress.errors.load(Ordering::Relaxed),
        );
    }
    if !o.quiet {
        eprintln!();
    }
}

/// Prints what went wrong and says whether the run passed.
fn judge(o: &Options, stats: &Stats) -> bool {
    let total = stats.total();
    for e in &stats.connection_errors {
        eprintln!("connection error: {e}");
    }
    if total.errors + total.mismatches > 0 {
        eprintln!(
            "{} error replies, {} mismatches; the first:",
            total.errors, total.mismatches
        );
        for p in &stats.problems {
            eprintln!("  {p}");
        }
    }
    let bad_replies = o.verify && total.errors + total.mismatches > 0;
    stats.connection_errors.is_empty() && !bad_replies
}
