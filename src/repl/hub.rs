//! The replication hub: one thread that merges the shards' logs into the replication stream,
//! keeps the backlog and feeds the replicas (see the module above for the design).

use super::{Attach, MasterState, ReplicaInfo, Start, ToHub};
use shards::rdb::file::{Aux, FileWriter};
use shards::resp::{parse_command, ParseLimits, Parsed};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A replica whose unsent output passes this is dropped (`client-output-buffer-limit replica`'s
/// hard limit).
const OUTPUT_LIMIT: usize = 256 * 1024 * 1024;

/// Most a replica may send that does not make whole commands (its ACKs are a few dozen bytes).
const READ_LIMIT: usize = 1024 * 1024;

/// How long the replicas gathered for one payload are waited for once its cut is in.
const GATHER_WAIT: Duration = Duration::from_secs(5);

/// Payload bytes sent between purges of the allocator's freed pages during a full resync.
/// The payload passes through buffers made on one thread and freed on another; jemalloc keeps
/// such pages for seconds, which would show as the master's memory growing by a good part of
/// the data while a sync runs.
const PURGE_EVERY: usize = 16 * 1024 * 1024;

/// Largest run of a shard's commands kept as one record (it grows while the merge waits).
const RUN_MAX: usize = 64 * 1024;

/// Most bytes a replica's writer thread gathers into one write.
const WRITE_BATCH_MAX: usize = 256 * 1024;

/// The replication id of no history.
pub const NO_ID: &str = "0000000000000000000000000000000000000000";

/// Starts the hub (sharing `repl`'s published state, WAIT targets, payload queue and feeding
/// flag); returns its mailbox.
pub fn start(
    repl: &super::ReplShared,
    nshards: usize,
    scripts: Arc<shards::script::Store>,
) -> Sender<ToHub> {
    let (replid, state, waits) = (
        repl.replid.clone(),
        repl.state.clone(),
        repl.wait_targets.clone(),
    );
    let (payload, feeding, config) = (
        repl.payload.clone(),
        repl.feeding.clone(),
        repl.config.clone(),
    );
    let (tx, rx) = channel();
    std::thread::Builder::new()
        .name("repl-hub".into())
        .spawn(move || {
            let mut hub = Hub::new(replid, nshards, scripts, state);
            hub.waits = waits;
            hub.payload = payload;
            hub.feeding = feeding;
            hub.config = Some(config);
            hub.run(rx);
        })
        .expect("spawning the replication hub");
    tx
}

/// The WAITs in progress and the offsets that cover them (see `ReplShared::wait_targets`).
type Waits = Arc<Mutex<HashMap<u64, Option<u64>>>>;

/// One record of a shard's log.
enum Rec {
    /// Commands (RESP frames, one after another) for a database.
    Cmd(usize, Vec<u8>),
    /// A block of commands that ran on this shard alone: `MULTI … EXEC`.
    Block(Vec<(usize, Vec<u8>)>),
    /// This shard's part of a write over several shards.
    Part {
        id: Vec<u8>,
        peers: Vec<usize>,
        cmds: Vec<(usize, Vec<u8>)>,
    },
    /// The cut of a full resynchronisation.
    Cut(u64),
    /// A WAIT's mark.
    Mark(u64),
}

/// One shard's log as the hub reads it.
#[derive(Default)]
struct Source {
    /// Bytes not parsed yet.
    buf: Vec<u8>,
    /// The database of the commands read so far (its last SELECT).
    db: usize,
    /// A MULTI is open: the commands read since.
    block: Option<Vec<(usize, Vec<u8>)>>,
    recs: VecDeque<Rec>,
}

impl Source {
    /// Parses what whole records `buf` holds.
    fn parse(&mut self) {
        let mut ranges = Vec::new();
        let mut scratch = Vec::new();
        let limits = ParseLimits {
            bulk_len_max: usize::MAX,
        };
        let mut pos = 0;
        while pos < self.buf.len() {
            let consumed = match parse_command(&self.buf[pos..], &mut ranges, &mut scratch, limits)
            {
                Ok(Parsed::Command { consumed }) => consumed,
                Ok(Parsed::Empty { consumed }) => {
                    pos += consumed;
                    continue;
                }
                // The shards write whole commands; anything else waits for more bytes.
                _ => break,
            };
            let frame = &self.buf[pos..pos + consumed];
            let arg = |i: usize| ranges.get(i).map(|r| &frame[r.clone()]);
            let name = arg(0).unwrap_or_default();
            if name.eq_ignore_ascii_case(b"SELECT") {
                if let Some(db) = arg(1)
                    .and_then(|a| std::str::from_utf8(a).ok())
                    .and_then(|s| s.parse().ok())
                {
                    self.db = db;
                }
            } else if name.eq_ignore_ascii_case(b"MULTI") && self.block.is_none() {
                self.block = Some(Vec::new());
            } else if name.eq_ignore_ascii_case(b"EXEC") && self.block.is_some() {
                let cmds = self.block.take().unwrap_or_default();
                if let (Some(id), Some(peers), 3) = (arg(1), arg(2), ranges.len()) {
                    let peers = String::from_utf8_lossy(peers)
                        .split(',')
                        .filter_map(|p| p.parse().ok())
                        .collect();
                    self.recs.push_back(Rec::Part {
                        id: id.to_vec(),
                        peers,
                        cmds,
                    });
                } else if !cmds.is_empty() {
                    self.recs.push_back(Rec::Block(cmds));
                }
            } else if let Some(b) = self.block.as_mut() {
                b.push((self.db, frame.to_vec()));
            } else {
                // Consecutive commands of one database travel as one run: the merge moves
                // them, and the stream takes them, in one piece.
                match self.recs.back_mut() {
                    Some(Rec::Cmd(db, run)) if *db == self.db && run.len() < RUN_MAX => {
                        run.extend_from_slice(frame)
                    }
                    _ => self.recs.push_back(Rec::Cmd(self.db, frame.to_vec())),
                }
            }
            pos += consumed;
        }
        self.buf.drain(..pos);
    }
}

/// The keys (with their databases) commands touch (each entry may hold several frames); None
/// when one of them touches no key
/// (FLUSHALL, SWAPDB, FUNCTION …: it orders with everything).
fn keys_of<'a>(
    cmds: impl IntoIterator<Item = (&'a usize, &'a Vec<u8>)>,
) -> Option<Vec<(usize, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut ranges = Vec::new();
    let mut scratch = Vec::new();
    let limits = ParseLimits {
        bulk_len_max: usize::MAX,
    };
    let mut pos = Vec::new();
    for (db, frames) in cmds {
        let mut at = 0;
        while at < frames.len() {
            let Ok(Parsed::Command { consumed }) =
                parse_command(&frames[at..], &mut ranges, &mut scratch, limits)
            else {
                return None;
            };
            let frame = &frames[at..at + consumed];
            let args: Vec<&[u8]> = ranges.iter().map(|r| &frame[r.clone()]).collect();
            let l = shards::cmd::lookup(&args).ok()?;
            if matches!(l.spec.name, "move" | "copy") {
                // They may write the key in another database too.
                return None;
            }
            shards::cmd::key_positions(l.spec, &args, &mut pos);
            if pos.is_empty() {
                return None;
            }
            out.extend(pos.iter().map(|&p| (*db, args[p].to_vec())));
            at += consumed;
        }
    }
    Some(out)
}

/// The keys a record touches (None: it orders with everything, as a cut does).
fn rec_keys(r: &Rec) -> Option<Vec<(usize, Vec<u8>)>> {
    match r {
        Rec::Cmd(db, frame) => keys_of([(db, frame)]),
        Rec::Block(cmds) | Rec::Part { cmds, .. } => keys_of(cmds.iter().map(|(d, f)| (d, f))),
        Rec::Cut(_) => None,
        Rec::Mark(_) => Some(Vec::new()),
    }
}

/// A replica being fed.
struct Replica {
    id: u64,
    client: Arc<super::ClientDesc>,
    ip: String,
    port: u16,
    out: Sender<Out>,
    /// Bytes handed to the writer thread and not written yet.
    queued: Arc<std::sync::atomic::AtomicUsize>,
    ack: Arc<Mutex<(u64, u64)>>,
    /// An acknowledgement has come.
    acked: Arc<std::sync::atomic::AtomicBool>,
    alive: Arc<std::sync::atomic::AtomicBool>,
    phase: Phase,
    /// The stream held while the replica is in `WaitAck`.
    pending: Vec<u8>,
    /// What this pass of the hub has for the replica: handed to the writer thread in one
    /// piece at the end of the pass (one write for many commands).
    outbuf: Vec<u8>,
    /// The socket, to shut down when the replica is dropped (its writer may be blocked).
    closer: std::net::TcpStream,
}

enum Phase {
    /// Waiting for its cut to pass and its snapshot to be sent.
    Syncing {
        sync: u64,
    },
    /// The payload went with an EOF mark: the stream waits for the replica's first
    /// acknowledgement (a replica finds the mark only at the end of what it has read), as
    /// Redis's masters wait.
    WaitAck,
    Online,
}

/// A full resynchronisation in progress.
struct Sync {
    writer: FileWriter,
    /// Shards whose cut marker has been read (their later records wait for the others').
    cut: Vec<bool>,
    /// Shards whose last piece has come.
    done: Vec<bool>,
    /// The stream offset at the cut, once every shard's cut is in.
    start: Option<u64>,
    /// The replicas this payload is for (several when they came within
    /// `repl-diskless-sync-delay` of each other), and how many are to come.
    members: Vec<Member>,
    expected: usize,
    made: Instant,
    /// The EOF mark.
    mark: [u8; 40],
    /// Without `capa eof` (or with `repl-diskless-sync no`) the payload's length comes first:
    /// the file is written to disk whole, then sent (Redis's disk-based sync).
    disk: Option<DiskPayload>,
    /// The stream since the cut, held until the payload has gone.
    held: Vec<u8>,
}

/// A replica a full resynchronisation is for.
struct Member {
    id: u64,
    psync: bool,
    /// The payload streams to it EOF-marked (else it goes length-prefixed, from disk).
    capa_eof: bool,
    /// The line announcing the payload has gone out.
    header_sent: bool,
}

/// A payload written to a file in `dir` before it is sent.
struct DiskPayload {
    path: std::path::PathBuf,
    file: std::fs::File,
    len: u64,
}

impl DiskPayload {
    fn create(dir: &str, sync: u64) -> std::io::Result<DiskPayload> {
        let path =
            std::path::Path::new(dir).join(format!("temp-repl-{}-{sync}.rdb", std::process::id()));
        let file = std::fs::File::create(&path)?;
        Ok(DiskPayload { path, file, len: 0 })
    }

    fn append(&mut self, piece: &[u8]) -> std::io::Result<()> {
        self.file.write_all(piece)?;
        self.len += piece.len() as u64;
        Ok(())
    }
}

impl Drop for DiskPayload {
    fn drop(&mut self) {
        // The writer thread has its own handle open once it sends the file.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What a replica's writer thread sends.
enum Out {
    Bytes(Vec<u8>),
    /// A payload file, whole (its length went before).
    File(std::fs::File),
}

struct Hub {
    replid: String,
    /// The id before the last promotion, and the first offset it does not cover (psync2: a
    /// replica of our former master continues from our backlog up to there).
    replid2: String,
    second_offset: i64,
    /// While a replica: the stream is our master's, relayed byte for byte as shard 0 applies
    /// it (`ToHub::Upstream`), so chained replicas share its ids and offsets; the shards'
    /// own logs are not used.
    relay: bool,
    /// The link session whose relayed bytes count (older sessions' are dropped).
    session: u64,
    /// `repl-backlog-ttl` (s; 0: never), and since when a master has had no replicas.
    backlog_ttl: u64,
    alone_since: Option<Instant>,
    /// The backlog was freed for want of replicas (it starts again with the next one).
    backlog_freed: bool,
    n: usize,
    scripts: Arc<shards::script::Store>,
    published: Arc<Mutex<MasterState>>,
    sources: Vec<Source>,
    /// The database of the stream so far (None: a SELECT comes first).
    db: Option<usize>,
    offset: u64,
    backlog: VecDeque<u8>,
    replicas: Vec<Replica>,
    syncs: HashMap<u64, Sync>,
    /// Resynchronisations whose cut failed: their markers and pieces are ignored.
    aborted: std::collections::HashSet<u64>,
    last_ping: Instant,
    waits: Waits,
    /// Marks read per WAIT.
    marks: HashMap<u64, usize>,
    /// The offset after the last write in the stream (not counting PINGs and GETACKs, which
    /// no WAIT needs acknowledged).
    data_offset: u64,
    config: Option<Arc<crate::config::Config>>,
    /// `repl-backlog-size`, `repl-ping-replica-period`, `repl-timeout` (s), `repl-diskless-sync`.
    backlog_size: usize,
    ping_period: Duration,
    timeout_ms: u64,
    diskless: bool,
    config_gen: u64,
    payload: Arc<super::PayloadQueue>,
    /// Payload bytes sent since the last purge.
    since_purge: usize,
    /// The shards hand their logs to the hub (`ReplShared::feeding`).
    feeding: Arc<std::sync::atomic::AtomicBool>,
}

impl Hub {
    fn new(
        replid: String,
        n: usize,
        scripts: Arc<shards::script::Store>,
        published: Arc<Mutex<MasterState>>,
    ) -> Hub {
        Hub {
            replid,
            replid2: NO_ID.to_string(),
            second_offset: -1,
            relay: false,
            session: 0,
            backlog_ttl: 3600,
            alone_since: None,
            backlog_freed: false,
            n,
            scripts,
            published,
            sources: (0..n).map(|_| Source::default()).collect(),
            db: None,
            offset: 0,
            backlog: VecDeque::new(),
            replicas: Vec::new(),
            syncs: HashMap::new(),
            aborted: Default::default(),
            last_ping: Instant::now(),
            waits: Default::default(),
            marks: HashMap::new(),
            data_offset: 0,
            config: None,
            backlog_size: 1024 * 1024,
            ping_period: Duration::from_secs(10),
            timeout_ms: 60_000,
            diskless: true,
            config_gen: u64::MAX,
            payload: Default::default(),
            since_purge: 0,
            feeding: Default::default(),
        }
    }

    fn run(mut self, rx: Receiver<ToHub>) {
        loop {
            self.read_config();
            // Acknowledgements are published at once while a WAIT is pending.
            let waiting = !self
                .waits
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty();
            // So are the writers' progress while a payload streams (the snapshots wait on it).
            let busy = waiting || !self.syncs.is_empty();
            let tick = Duration::from_millis(if busy { 2 } else { 100 });
            match rx.recv_timeout(tick) {
                Ok(msg) => {
                    self.take(msg);
                    // Everything already waiting goes in before the stream moves on.
                    while let Ok(msg) = rx.try_recv() {
                        self.take(msg);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.merge();
            // A relaying replica passes its master's PINGs on instead.
            if !self.relay
                && !self.replicas.is_empty()
                && self.last_ping.elapsed() >= self.ping_period
            {
                self.last_ping = Instant::now();
                self.emit_raw(b"*1\r\n$4\r\nPING\r\n");
            }
            self.progress_syncs();
            self.reap();
            self.expire_backlog();
            self.flush();
            self.publish();
            if std::env::var_os("SHARDIS_REPL_TRACE").is_some() {
                let heads: Vec<String> = self
                    .sources
                    .iter()
                    .map(|s| {
                        let h = match s.recs.front() {
                            None => "-".to_string(),
                            Some(Rec::Cmd(..)) => "cmd".into(),
                            Some(Rec::Block(..)) => "block".into(),
                            Some(Rec::Part { id, .. }) => {
                                format!("part {}", String::from_utf8_lossy(id))
                            }
                            Some(Rec::Cut(c)) => format!("cut {c}"),
                            Some(Rec::Mark(w)) => format!("mark {w}"),
                        };
                        format!("{h} ({} recs, {} bytes)", s.recs.len(), s.buf.len())
                    })
                    .collect();
                crate::log!(
                    "repl hub: offset {} heads {:?} syncs {:?}",
                    self.offset,
                    heads,
                    self.syncs.keys().collect::<Vec<_>>()
                );
            }
        }
    }

    /// Re-reads the replication settings when the configuration changed.
    fn read_config(&mut self) {
        let Some(cfg) = self.config.clone() else {
            return;
        };
        let g = cfg.generation();
        if g == self.config_gen {
            return;
        }
        self.config_gen = g;
        self.backlog_size = cfg.get_i64("repl-backlog-size").max(16 * 1024) as usize;
        self.ping_period =
            Duration::from_secs(cfg.get_i64("repl-ping-replica-period").max(1) as u64);
        self.timeout_ms = cfg.get_i64("repl-timeout").max(1) as u64 * 1000;
        self.diskless = cfg.get("repl-diskless-sync") == "yes";
        self.backlog_ttl = cfg.get_i64("repl-backlog-ttl").max(0) as u64;
        let excess = self.backlog.len().saturating_sub(self.backlog_size);
        self.backlog.drain(..excess);
    }

    fn sync_entry(&mut self, sync: u64) -> &mut Sync {
        let n = self.n;
        let scripts = self.scripts.clone();
        self.syncs.entry(sync).or_insert_with(|| {
            let aux = Aux {
                ctime_s: crate::ctx::now_us() / 1_000_000,
                used_mem: crate::info::allocated_bytes(),
                aof_base: false,
                search: shards::search::published(),
            };
            let mut writer = FileWriter::new(&aux);
            for code in shards::script::function::codes(&scripts) {
                writer.function(&code);
            }
            let mut mark = [0u8; 40];
            let mut rng = shards::rng::Rng::new(crate::ctx::now_us() ^ sync);
            for b in mark.iter_mut() {
                *b = b"0123456789abcdef"[rng.below(16)];
            }
            Sync {
                writer,
                cut: vec![false; n],
                done: vec![false; n],
                start: None,
                members: Vec::new(),
                expected: 1,
                made: Instant::now(),
                mark,
                disk: None,
                held: Vec::new(),
            }
        })
    }

    fn take(&mut self, msg: ToHub) {
        match msg {
            ToHub::Feed { shard, bytes } => {
                if self.relay {
                    return;
                }
                if let Some(s) = self.sources.get_mut(shard) {
                    s.buf.extend_from_slice(&bytes);
                    s.parse();
                }
            }
            ToHub::Cut { shard, sync } => {
                if self.relay {
                    // The cut's offset comes from shard 0 (`RelayCut`).
                    if !self.aborted.contains(&sync) {
                        self.sync_entry(sync);
                    }
                    return;
                }
                if let Some(s) = self.sources.get_mut(shard) {
                    // Records before the cut are in `recs` already (the feed came first).
                    s.parse();
                    s.recs.push_back(Rec::Cut(sync));
                }
                if !self.aborted.contains(&sync) {
                    self.sync_entry(sync);
                }
            }
            ToHub::Rdb {
                shard,
                sync,
                piece,
                done,
            } => {
                self.payload
                    .unread
                    .fetch_sub(piece.len(), std::sync::atomic::Ordering::Relaxed);
                if self.aborted.contains(&sync) {
                    return;
                }
                let s = self.sync_entry(sync);
                if !piece.is_empty() {
                    s.writer.append(&piece);
                }
                if done {
                    if let Some(d) = s.done.get_mut(shard) {
                        *d = true;
                    }
                    if s.done.iter().all(|d| *d) {
                        s.writer.finish();
                    }
                }
            }
            ToHub::Abort { sync } => {
                self.syncs.remove(&sync);
                self.aborted.insert(sync);
            }
            ToHub::Attach(a) => self.attach(*a),
            ToHub::Relay {
                session,
                replid,
                offset,
                full,
            } => self.relay_from(session, replid, offset, full),
            ToHub::Upstream { session, bytes } => {
                if self.relay && session == self.session {
                    self.emit_raw(&bytes);
                    self.data_offset = self.offset;
                }
            }
            ToHub::RelayCut { sync } => {
                if self.relay && !self.aborted.contains(&sync) {
                    let (n, offset) = (self.n, self.offset);
                    let s = self.sync_entry(sync);
                    s.start = Some(offset);
                    s.cut = vec![true; n];
                    s.made = Instant::now();
                }
            }
            ToHub::Promote { replid } => self.promote(replid),
            ToHub::Expect { sync, replicas } => {
                if !self.aborted.contains(&sync) {
                    self.sync_entry(sync).expected = replicas;
                }
            }
            ToHub::Ask(tx) => {
                let _ = tx.send((self.replid.clone(), self.offset));
            }
            ToHub::Kill(id) => {
                for r in &self.replicas {
                    if id.is_none_or(|id| id == r.id) {
                        r.alive.store(false, std::sync::atomic::Ordering::Release);
                        let _ = r.closer.shutdown(std::net::Shutdown::Both);
                    }
                }
            }
            ToHub::Mark { shard, wid } => {
                if let Some(s) = self.sources.get_mut(shard) {
                    s.parse();
                    s.recs.push_back(Rec::Mark(wid));
                }
            }
        }
    }

    /// A replica's link is in step with its master from `offset` on, under `replid`: the hub
    /// relays its stream from now on. After a full resync the history starts there (the
    /// backlog is emptied); a partial one under a new id keeps the old as `replid2`. Chained
    /// replicas are disconnected either way, so they ask again with the ids now valid.
    fn relay_from(&mut self, session: u64, replid: String, offset: u64, full: bool) {
        if !self.relay {
            // Our own writes logged before we became a replica go out first (the shards
            // went on handing them over until now); from here on their logs are not needed.
            self.merge();
            self.feeding
                .store(false, std::sync::atomic::Ordering::Release);
        }
        // Chained replicas go (to ask again) only when the history they follow changed.
        let mut changed = true;
        if full || offset != self.offset {
            self.backlog.clear();
            self.offset = offset;
            self.replid2 = NO_ID.to_string();
            self.second_offset = -1;
        } else if replid != self.replid {
            self.replid2 = std::mem::replace(&mut self.replid, replid.clone());
            self.second_offset = self.offset as i64 + 1;
        } else {
            changed = !self.relay;
        }
        self.replid = replid;
        self.relay = true;
        self.session = session;
        self.data_offset = self.offset;
        self.forget_sources();
        if changed {
            self.drop_replicas();
        }
    }

    /// REPLICAOF NO ONE: the relayed history becomes ours under a new id (the old one stays
    /// valid as `replid2` up to here), and the shards' logs make the stream from now on.
    fn promote(&mut self, replid: String) {
        self.replid2 = std::mem::replace(&mut self.replid, replid);
        self.second_offset = self.offset as i64 + 1;
        self.relay = false;
        self.forget_sources();
        self.drop_replicas();
    }

    /// Forgets what the shards logged so far (it was relayed, or is superseded).
    fn forget_sources(&mut self) {
        for s in self.sources.iter_mut() {
            *s = Source::default();
        }
        // The next command in the stream says its database.
        self.db = None;
    }

    fn drop_replicas(&mut self) {
        for r in self.replicas.iter() {
            r.alive.store(false, std::sync::atomic::Ordering::Release);
        }
        for sync in self.syncs.keys() {
            self.aborted.insert(*sync);
        }
        self.syncs.clear();
    }

    /// Moves records from the sources to the stream while some can go.
    fn merge(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.n {
                moved |= self.step(i);
            }
            if !moved {
                return;
            }
        }
    }

    /// Emits the head record of source `i` if it may go now; returns whether it did.
    fn step(&mut self, i: usize) -> bool {
        match self.sources[i].recs.front() {
            None => false,
            Some(Rec::Cmd(..)) | Some(Rec::Block(..)) => {
                match self.sources[i].recs.pop_front() {
                    Some(Rec::Cmd(db, frame)) => self.emit_cmds(&[(db, frame)], false),
                    Some(Rec::Block(cmds)) => self.emit_cmds(&cmds, true),
                    _ => {}
                }
                true
            }
            Some(Rec::Part { id, peers, .. }) => {
                let (id, peers) = (id.clone(), peers.clone());
                // Each peer's part may sit behind records of its shard that touch other keys
                // (transactions over disjoint keys commit in any order on each shard): it
                // may go first there, as their effects commute. Anything else waits.
                let mut at = Vec::with_capacity(peers.len());
                for &p in &peers {
                    if p == i {
                        at.push(0);
                        continue;
                    }
                    let Some(src) = self.sources.get(p) else {
                        return false;
                    };
                    let Some(k) = src
                        .recs
                        .iter()
                        .position(|r| matches!(r, Rec::Part { id: other, .. } if *other == id))
                    else {
                        return false;
                    };
                    if k > 0 {
                        let Some(Rec::Part { cmds: theirs, .. }) = src.recs.get(k) else {
                            return false;
                        };
                        let Some(mine) = keys_of(theirs.iter().map(|(d, f)| (d, f))) else {
                            return false;
                        };
                        let commutes = src.recs.iter().take(k).all(|r| {
                            rec_keys(r).is_some_and(|ks| ks.iter().all(|x| !mine.contains(x)))
                        });
                        if !commutes {
                            return false;
                        }
                    }
                    at.push(k);
                }
                let mut all = Vec::new();
                for (&p, &k) in peers.iter().zip(&at) {
                    if let Some(Rec::Part { cmds, .. }) = self.sources[p].recs.remove(k) {
                        all.extend(cmds);
                    }
                }
                if !all.is_empty() {
                    self.emit_cmds(&all, true);
                }
                true
            }
            Some(Rec::Mark(wid)) => {
                let wid = *wid;
                self.sources[i].recs.pop_front();
                let seen = self.marks.entry(wid).or_insert(0);
                *seen += 1;
                if *seen == self.n {
                    self.marks.remove(&wid);
                    // Everything before every mark is in the stream: this offset covers the
                    // waiting connection's writes. The replicas are asked to acknowledge now.
                    let target = self.data_offset;
                    if let Some(t) = self
                        .waits
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_mut(&wid)
                    {
                        *t = Some(target);
                    }
                    if !self.replicas.is_empty() {
                        self.emit_raw(b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n");
                    }
                }
                true
            }
            Some(Rec::Cut(sync)) => {
                let sync = *sync;
                let aborted = !self.syncs.contains_key(&sync);
                let all_here = (0..self.n).all(
                    |p| matches!(self.sources[p].recs.front(), Some(Rec::Cut(s)) if *s == sync),
                );
                if !aborted && !all_here {
                    return false;
                }
                if aborted {
                    self.sources[i].recs.pop_front();
                    return true;
                }
                for p in 0..self.n {
                    self.sources[p].recs.pop_front();
                }
                // The stream after a cut starts with a SELECT, as Redis's does after a sync.
                self.db = None;
                let offset = self.offset;
                if let Some(s) = self.syncs.get_mut(&sync) {
                    s.start = Some(offset);
                    s.cut = vec![true; self.n];
                    s.made = Instant::now();
                }
                true
            }
        }
    }

    /// Appends commands to the stream (wrapped in MULTI / EXEC when `block`), with SELECTs
    /// where the database changes.
    fn emit_cmds(&mut self, cmds: &[(usize, Vec<u8>)], block: bool) {
        let mut out = Vec::new();
        if block {
            out.extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n");
        }
        for (db, frame) in cmds {
            if self.db != Some(*db) {
                let n = db.to_string();
                out.extend_from_slice(
                    format!("*2\r\n$6\r\nSELECT\r\n${}\r\n{n}\r\n", n.len()).as_bytes(),
                );
                self.db = Some(*db);
            }
            out.extend_from_slice(frame);
        }
        if block {
            out.extend_from_slice(b"*1\r\n$4\r\nEXEC\r\n");
        }
        self.emit_raw(&out);
        self.data_offset = self.offset;
    }

    /// Appends bytes to the stream: the backlog, and every replica (held for those syncing).
    fn emit_raw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.offset += bytes.len() as u64;
        self.backlog.extend(bytes.iter().copied());
        let excess = self.backlog.len().saturating_sub(self.backlog_size);
        if excess > 0 {
            self.backlog.drain(..excess);
        }
        for r in self.replicas.iter_mut() {
            match r.phase {
                Phase::Online => send(r, bytes),
                Phase::WaitAck => r.pending.extend_from_slice(bytes),
                Phase::Syncing { .. } => {}
            }
        }
        for s in self.syncs.values_mut() {
            if s.start.is_some() {
                s.held.extend_from_slice(bytes);
            }
        }
    }

    fn attach(&mut self, a: Attach) {
        let Attach {
            sock,
            client,
            tls,
            id,
            addr,
            listening_port,
            capa_eof,
            how,
        } = a;
        let Some(mut r) = spawn_replica((sock, tls), id, addr, listening_port) else {
            return;
        };
        r.client = client;
        match how {
            Start::Continue { from } => {
                let first = self.offset + 1 - self.backlog.len() as u64;
                if from < first || from > self.offset + 1 {
                    // The backlog moved on meanwhile: the replica will ask again.
                    r.alive.store(false, std::sync::atomic::Ordering::Release);
                    return;
                }
                let mut out = format!("+CONTINUE {}\r\n", self.replid).into_bytes();
                let skip = (from - first) as usize;
                out.extend(self.backlog.iter().skip(skip).copied());
                send_owned(&mut r, out);
                r.phase = Phase::Online;
                crate::log!(
                    "Partial resynchronization request from {}:{} accepted, from offset {from}",
                    r.ip,
                    r.port
                );
            }
            Start::Full { sync, psync } => {
                if self.aborted.contains(&sync) {
                    r.alive.store(false, std::sync::atomic::Ordering::Release);
                    return;
                }
                let diskless = self.diskless;
                let s = self.sync_entry(sync);
                if s.members.iter().any(|m| m.header_sent) {
                    // The payload has begun: too late to join it; the replica asks again.
                    r.alive.store(false, std::sync::atomic::Ordering::Release);
                    return;
                }
                s.members.push(Member {
                    id: r.id,
                    psync,
                    capa_eof: capa_eof && psync && diskless,
                    header_sent: false,
                });
                r.phase = Phase::Syncing { sync };
            }
        }
        self.replicas.push(r);
    }

    /// Sends what the full resynchronisations have ready: the announcing line once the cut is
    /// in, the payload as it is made (streamed to EOF-capable replicas, written to disk for
    /// the others), then the stream since the cut.
    fn progress_syncs(&mut self) {
        let ids: Vec<u64> = self.syncs.keys().copied().collect();
        for sync in ids {
            let Some(s) = self.syncs.get_mut(&sync) else {
                continue;
            };
            let member_of = |r: &Replica| s.members.iter().any(|m| m.id == r.id);
            let live = self.replicas.iter().filter(|r| member_of(r)).count();
            // Replicas that gathered for one payload all attach before it starts going out
            // (one that never comes is not waited for long).
            let waiting = s.members.len() < s.expected && s.made.elapsed() < GATHER_WAIT;
            if s.start.is_none() || waiting {
                continue;
            }
            if live == 0 || s.held.len() > OUTPUT_LIMIT {
                // Nobody to send to, or the replicas cannot keep up with the writes while
                // they load: they start over.
                for r in self.replicas.iter().filter(|r| member_of(r)) {
                    r.alive.store(false, std::sync::atomic::Ordering::Release);
                }
                self.syncs.remove(&sync);
                self.aborted.insert(sync);
                continue;
            }
            if !self.sync_step(sync) {
                self.syncs.remove(&sync);
                self.aborted.insert(sync);
            }
        }
    }

    /// One pass of full resynchronisation `sync` (its cut is in). Returns false when it
    /// failed for good.
    fn sync_step(&mut self, sync: u64) -> bool {
        let dir = self.config.as_ref().map_or(".".into(), |c| c.get("dir"));
        let Some(s) = self.syncs.get_mut(&sync) else {
            return false;
        };
        let start = s.start.unwrap_or(0);
        let fullresync = format!("+FULLRESYNC {} {start}\r\n", self.replid);
        let piece = s.writer.take_pending();
        let finished = s.done.iter().all(|d| *d);
        self.since_purge += piece.len();
        if self.since_purge >= PURGE_EVERY || (finished && self.since_purge > 0) {
            self.since_purge = 0;
            crate::memory::purge();
        }
        if s.members.iter().any(|m| !m.capa_eof) {
            if s.disk.is_none() {
                s.disk = DiskPayload::create(&dir, sync)
                    .map_err(|e| crate::log!("Full resync {sync}: creating its file: {e}"))
                    .ok();
            }
            if !matches!(s.disk.as_mut().map(|d| d.append(&piece)), Some(Ok(()))) {
                crate::log!("Full resync {sync}: the payload file could not be written");
                return false;
            }
        }
        for m in s.members.iter_mut().filter(|m| m.capa_eof) {
            let Some(r) = self.replicas.iter_mut().find(|r| r.id == m.id) else {
                continue;
            };
            if !m.header_sent {
                let mut line = Vec::new();
                if m.psync {
                    line.extend_from_slice(fullresync.as_bytes());
                }
                line.extend_from_slice(b"$EOF:");
                line.extend_from_slice(&s.mark);
                line.extend_from_slice(b"\r\n");
                send_owned(r, line);
                m.header_sent = true;
            }
            send(r, &piece);
            if finished {
                send(r, &s.mark);
            }
        }
        if !finished {
            return true;
        }
        for m in s.members.iter() {
            let Some(r) = self.replicas.iter_mut().find(|r| r.id == m.id) else {
                continue;
            };
            if m.capa_eof {
                // The stream waits for the replica's first acknowledgement.
                r.pending = s.held.clone();
                r.phase = Phase::WaitAck;
            } else if let Some(d) = s.disk.as_ref() {
                let mut out = Vec::new();
                if m.psync {
                    out.extend_from_slice(fullresync.as_bytes());
                }
                out.extend_from_slice(format!("${}\r\n", d.len).as_bytes());
                send_owned(r, out);
                flush_one(r);
                match std::fs::File::open(&d.path) {
                    Ok(f) => {
                        let _ = r.out.send(Out::File(f));
                    }
                    Err(_) => r.alive.store(false, std::sync::atomic::Ordering::Release),
                }
                send(r, &s.held);
                r.phase = Phase::Online;
            }
            crate::log!("Synchronization with replica {}:{} succeeded", r.ip, r.port);
        }
        self.syncs.remove(&sync);
        true
    }

    /// Drops replicas whose link broke or whose output grew past the limit; starts the stream
    /// of those that acknowledged their payload.
    fn reap(&mut self) {
        let now_ms = crate::ctx::now_us() / 1000;
        for r in self.replicas.iter() {
            let last = r.ack.lock().unwrap_or_else(|e| e.into_inner()).1;
            if matches!(r.phase, Phase::Online) && now_ms.saturating_sub(last) > self.timeout_ms {
                crate::log!("Disconnecting timedout replica: {}:{}", r.ip, r.port);
                r.alive.store(false, std::sync::atomic::Ordering::Release);
            }
        }
        for r in self.replicas.iter_mut() {
            if matches!(r.phase, Phase::WaitAck)
                && r.acked.load(std::sync::atomic::Ordering::Acquire)
            {
                let held = std::mem::take(&mut r.pending);
                send_owned(r, held);
                r.phase = Phase::Online;
            }
        }
        self.replicas.retain(|r| {
            let alive = r.alive.load(std::sync::atomic::Ordering::Acquire)
                && r.queued.load(std::sync::atomic::Ordering::Relaxed)
                    + r.pending.len()
                    + r.outbuf.len()
                    <= OUTPUT_LIMIT;
            if !alive {
                r.alive.store(false, std::sync::atomic::Ordering::Release);
                let _ = r.closer.shutdown(std::net::Shutdown::Both);
                crate::log!("Connection with replica {}:{} lost.", r.ip, r.port);
            }
            alive
        });
    }

    /// `repl-backlog-ttl`: a master without replicas that long frees its backlog, and takes
    /// a new replication id (nobody can continue the old history from it any more).
    fn expire_backlog(&mut self) {
        if self.relay || !self.replicas.is_empty() {
            self.alone_since = None;
            self.backlog_freed = false;
            return;
        }
        let since = *self.alone_since.get_or_insert_with(Instant::now);
        if self.backlog_ttl == 0
            || self.backlog_freed
            || since.elapsed() < Duration::from_secs(self.backlog_ttl)
        {
            return;
        }
        crate::log!(
            "Replication backlog freed after {} seconds without replicas.",
            self.backlog_ttl
        );
        self.backlog = VecDeque::new();
        self.backlog_freed = true;
        self.replid = super::new_replid();
        self.replid2 = NO_ID.to_string();
        self.second_offset = -1;
    }

    /// Hands each replica's output of this pass to its writer thread.
    fn flush(&mut self) {
        for r in self.replicas.iter_mut() {
            flush_one(r);
        }
        // Only replicas receiving a payload set the snapshots' pace (a lagging online one
        // must not hold back another's full resync).
        let unwritten = self
            .replicas
            .iter()
            .filter(|r| matches!(r.phase, Phase::Syncing { .. }))
            .map(|r| r.queued.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        self.payload
            .unwritten
            .store(unwritten, std::sync::atomic::Ordering::Relaxed);
    }

    fn publish(&self) {
        let replicas = self
            .replicas
            .iter()
            .map(|r| {
                let (ack_offset, ack_ms) = *r.ack.lock().unwrap_or_else(|e| e.into_inner());
                ReplicaInfo {
                    id: r.id,
                    client: r.client.clone(),
                    ip: r.ip.clone(),
                    port: r.port,
                    state: match &r.phase {
                        Phase::Online | Phase::WaitAck => "online",
                        Phase::Syncing { sync, .. } => {
                            if self.syncs.get(sync).is_some_and(|s| {
                                s.members.iter().any(|m| m.id == r.id && m.header_sent)
                            }) {
                                "send_bulk"
                            } else {
                                "wait_bgsave"
                            }
                        }
                    },
                    ack_offset,
                    ack_ms,
                }
            })
            .collect();
        let mut g = self.published.lock().unwrap_or_else(|e| e.into_inner());
        *g = MasterState {
            replid: self.replid.clone(),
            replid2: self.replid2.clone(),
            second_offset: self.second_offset,
            active: !self.backlog_freed,
            offset: self.offset,
            backlog_first: self.offset + 1 - self.backlog.len() as u64,
            backlog_len: self.backlog.len() as u64,
            replicas,
        };
    }
}

/// Hands the replica's output so far to its writer thread.
fn flush_one(r: &mut Replica) {
    if r.outbuf.is_empty() {
        return;
    }
    let bytes = std::mem::take(&mut r.outbuf);
    r.queued
        .fetch_add(bytes.len(), std::sync::atomic::Ordering::Relaxed);
    let _ = r.out.send(Out::Bytes(bytes));
}

/// Adds bytes to what the replica gets at the end of this pass.
fn send(r: &mut Replica, bytes: &[u8]) {
    r.outbuf.extend_from_slice(bytes);
}

/// `send`, taking the buffer itself when nothing is waiting (payload pieces are large).
fn send_owned(r: &mut Replica, bytes: Vec<u8>) {
    if r.outbuf.is_empty() {
        r.outbuf = bytes;
    } else {
        r.outbuf.extend_from_slice(&bytes);
    }
}

/// A replica's socket, as its writer thread sees it: plain, or with the TLS session it shares
/// with its reader thread (each writes to the socket only what it encrypted under the lock).
enum Wire {
    Plain(std::net::TcpStream),
    Tls(std::net::TcpStream, Arc<Mutex<rustls::ServerConnection>>),
}

impl Wire {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Wire::Plain(s) => s.write_all(bytes),
            Wire::Tls(s, tls) => {
                let mut out = Vec::with_capacity(bytes.len() + 1024);
                {
                    let mut tls = tls.lock().unwrap_or_else(|e| e.into_inner());
                    tls.writer().write_all(bytes)?;
                    while tls.wants_write() {
                        tls.write_tls(&mut out)?;
                    }
                }
                s.write_all(&out)
            }
        }
    }

    /// A file's bytes (a disk payload), in pieces.
    fn send_file(&mut self, f: &mut std::fs::File) -> std::io::Result<()> {
        let mut piece = vec![0u8; 256 * 1024];
        loop {
            match f.read(&mut piece)? {
                0 => return Ok(()),
                n => self.send(&piece[..n])?,
            }
        }
    }

    fn shutdown(&self) {
        let s = match self {
            Wire::Plain(s) | Wire::Tls(s, _) => s,
        };
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

/// A replica's two threads: one writes what the hub queues, one reads its acknowledgements.
fn spawn_replica(
    (sock, tls): (std::net::TcpStream, Option<rustls::ServerConnection>),
    id: u64,
    ip: String,
    port: u16,
) -> Option<Replica> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let reader = sock.try_clone().ok()?;
    let closer = sock.try_clone().ok()?;
    let _ = sock.set_nodelay(true);
    // A replica that stops reading cannot hold its writer forever.
    let _ = sock.set_write_timeout(Some(Duration::from_secs(60)));
    let tls = tls.map(|t| Arc::new(Mutex::new(t)));
    let (tx, rx) = channel::<Out>();
    let queued = Arc::new(AtomicUsize::new(0));
    let alive = Arc::new(AtomicBool::new(true));
    let ack = Arc::new(Mutex::new((0u64, crate::ctx::now_us() / 1000)));
    let acked = Arc::new(AtomicBool::new(false));
    {
        let (queued, alive) = (queued.clone(), alive.clone());
        let mut wire = match &tls {
            Some(t) => Wire::Tls(sock, t.clone()),
            None => Wire::Plain(sock),
        };
        std::thread::Builder::new()
            .name(format!("repl-out-{id}"))
            .spawn(move || {
                let mut next = None;
                while let Some(out) = next.take().or_else(|| rx.recv().ok()) {
                    if !alive.load(Ordering::Acquire) {
                        break;
                    }
                    let mut bytes = match out {
                        Out::Bytes(b) => b,
                        Out::File(mut f) => {
                            if wire.send_file(&mut f).is_err() {
                                break;
                            }
                            continue;
                        }
                    };
                    // What queued up while the last write ran goes out in the same write.
                    while bytes.len() < WRITE_BATCH_MAX {
                        match rx.try_recv() {
                            Ok(Out::Bytes(more)) => bytes.extend_from_slice(&more),
                            Ok(file) => {
                                next = Some(file);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if wire.send(&bytes).is_err() {
                        break;
                    }
                    queued.fetch_sub(bytes.len(), Ordering::Relaxed);
                }
                alive.store(false, Ordering::Release);
                wire.shutdown();
            })
            .ok()?;
    }
    {
        let (alive, ack, acked) = (alive.clone(), ack.clone(), acked.clone());
        std::thread::Builder::new()
            .name(format!("repl-in-{id}"))
            .spawn(move || read_acks((reader, tls), &alive, &ack, &acked))
            .ok()?;
    }
    Some(Replica {
        id,
        client: Default::default(),
        ip,
        port,
        out: tx,
        queued,
        ack,
        acked,
        alive,
        phase: Phase::Online,
        pending: Vec::new(),
        outbuf: Vec::new(),
        closer,
    })
}

/// Reads what a replica sends (REPLCONF ACK <offset>, and PINGs of old replicas) until the link
/// breaks.
fn read_acks(
    (mut sock, tls): (
        std::net::TcpStream,
        Option<Arc<Mutex<rustls::ServerConnection>>>,
    ),
    alive: &std::sync::atomic::AtomicBool,
    ack: &Mutex<(u64, u64)>,
    acked: &std::sync::atomic::AtomicBool,
) {
    use std::sync::atomic::Ordering;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut ranges = Vec::new();
    let mut scratch = Vec::new();
    let limits = ParseLimits {
        bulk_len_max: 64 * 1024,
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(500)));
    while alive.load(Ordering::Acquire) {
        match sock.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                match &tls {
                    None => buf.extend_from_slice(&chunk[..n]),
                    Some(t) => {
                        if decrypt(t, &chunk[..n], &mut buf).is_err() {
                            break;
                        }
                    }
                }
                // A replica sends short commands; one that never completes is dropped.
                if buf.len() > READ_LIMIT {
                    break;
                }
            }
            Err(e) if super::read_again(&e) => continue,
            Err(_) => break,
        }
        let mut pos = 0;
        loop {
            match parse_command(&buf[pos..], &mut ranges, &mut scratch, limits) {
                Ok(p @ (Parsed::Command { .. } | Parsed::Inline { .. })) => {
                    let (consumed, inline) = match p {
                        Parsed::Command { consumed } => (consumed, false),
                        Parsed::Inline { consumed } => (consumed, true),
                        _ => (0, false),
                    };
                    let base: &[u8] = if inline { &scratch } else { &buf[pos..] };
                    let args: Vec<&[u8]> = ranges.iter().map(|r| &base[r.clone()]).collect();
                    if args.len() >= 3
                        && args[0].eq_ignore_ascii_case(b"REPLCONF")
                        && args[1].eq_ignore_ascii_case(b"ACK")
                    {
                        if let Some(off) = std::str::from_utf8(args[2])
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok())
                        {
                            let mut g = ack.lock().unwrap_or_else(|e| e.into_inner());
                            *g = (off, crate::ctx::now_us() / 1000);
                            acked.store(true, Ordering::Release);
                        }
                    }
                    pos += consumed;
                }
                Ok(Parsed::Empty { consumed }) => pos += consumed,
                Ok(Parsed::Incomplete) => break,
                Err(_) => {
                    alive.store(false, Ordering::Release);
                    return;
                }
            }
        }
        buf.drain(..pos);
    }
    alive.store(false, Ordering::Release);
}

/// Feeds ciphertext a replica sent to its TLS session; appends the plaintext to `buf`.
fn decrypt(
    tls: &Mutex<rustls::ServerConnection>,
    mut cipher: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut tls = tls.lock().unwrap_or_else(|e| e.into_inner());
    while !cipher.is_empty() {
        if tls.read_tls(&mut cipher)? == 0 {
            break;
        }
        let state = tls
            .process_new_packets()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let avail = state.plaintext_bytes_to_read();
        if avail > 0 {
            let start = buf.len();
            buf.resize(start + avail, 0);
            tls.reader().read_exact(&mut buf[start..])?;
        }
        if state.peer_has_closed() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}
