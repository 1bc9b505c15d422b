//! A client connection's state on its shard, and the slab that holds a shard's connections.

use crate::msg::{RepBody, Token};
use shards::resp::{Proto, Reply};
use std::ops::Range;
use std::os::fd::RawFd;

/// Called when every part of a multi-shard operation has answered: merges the answers into the
/// connection's reply (or starts the next stage).
pub type Done = Box<dyn FnOnce(&crate::ctx::ShardCtx, &mut Conn, Vec<(usize, RepBody)>)>;

/// Work the connection waits for; while it waits it executes nothing else, so its commands take
/// effect in the order it sent them.
pub enum Wait {
    None,
    /// A run of commands forwarded to one shard; its reply bytes go straight to the output.
    Run,
    /// A blocking command is parked on `shard`; its answer comes when served or timed out.
    Blocked {
        shard: usize,
    },
    /// A blocking command over keys on several shards found nothing; the owners of its keys
    /// watch them and wake it to run again.
    Retry,
    /// Several parts; `done` merges them.
    Multi {
        outstanding: usize,
        results: Vec<(usize, RepBody)>,
        done: Done,
    },
}

/// A MULTI block run live (see `crate::multi`).
pub struct LiveBlock {
    pub tx: crate::txn::TxId,
    /// Its commands not yet dispatched.
    pub left: usize,
    /// Its commands are in the input (counting starts there, not at EXEC).
    pub fed: bool,
}

/// The sequence number after `seq`. 0 is never used: it marks requests sent for no operation
/// (releases, unwatches), which get no answer.
pub fn next_seq(seq: u32) -> u32 {
    seq.wrapping_add(1).max(1)
}

pub struct Conn {
    pub fd: RawFd,
    pub token: Token,
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub name: Option<Vec<u8>>,
    pub db: usize,
    pub proto: Proto,
    pub authenticated: bool,
    /// The ACL user (None: the shard's internal connection, which may run anything), and the
    /// ACL generation it was read at (see `crate::acl_cmds::refresh`).
    pub user: Option<std::sync::Arc<shards::acl::User>>,
    pub acl_gen: u64,
    /// Query buffer and the position of the first unparsed byte.
    pub rbuf: Vec<u8>,
    pub rpos: usize,
    pub ranges: Vec<Range<usize>>,
    pub scratch: Vec<u8>,
    /// Output buffer and the position of the first unwritten byte.
    pub wbuf: Vec<u8>,
    pub wpos: usize,
    pub wait: Wait,
    /// Incremented per multi-shard operation, echoed in replies.
    pub seq: u32,
    pub close_after_reply: bool,
    /// Deadline (Unix ms; u64::MAX = none) of a waiting multi-shard blocking command.
    pub retry_deadline: Option<u64>,
    /// The multi-shard blocking command being run, while its keys are watched.
    pub retry_cmd: Option<(shards::cmd::Lookup, Vec<Vec<u8>>)>,
    /// A watched key was written while that command's gather was in flight: its copies may be
    /// stale, so if it finds nothing it runs again at once.
    pub woken: bool,
    /// The block being queued between MULTI and EXEC.
    pub multi: Option<crate::multi::Multi>,
    /// Keys WATCHed for the next EXEC.
    pub watching: Vec<crate::multi::Watched>,
    /// Commands to run next, before the rest of the input (EXEC of a block run live).
    pub inject: Vec<u8>,
    /// The next command is a script a shard sent back: it runs as a transaction over these
    /// keys (see `RepBody::Reroute`).
    pub reroute_keys: Option<Vec<(u8, shards::keyspace::Key)>>,
    /// How many times the running script has been run again over more keys.
    pub reroutes: u32,
    /// Since when the output has been over the normal class's soft limit.
    pub out_soft_since: Option<u64>,
    /// The block being run live: its transaction holds every shard until its commands are done.
    pub live: Option<LiveBlock>,
    /// The last transaction this connection coordinated: if the connection goes away mid-way,
    /// its locks are released everywhere.
    pub tx_open: Option<crate::txn::TxId>,
    /// EPOLLOUT is registered (a write was partial).
    pub want_write: bool,
    /// EPOLLIN is not registered (too much unprocessed input while waiting).
    pub read_paused: bool,
    pub created_ms: u64,
    pub last_ms: u64,
    pub last_cmd: (&'static str, Option<&'static str>),
    pub local_client: bool,
    /// `appendfsync always`: the output in `wbuf` waits until the AOF is synced up to
    /// `hold_until`; `held_len` is how much output that position covers.
    pub hold_until: u64,
    pub held_len: usize,
    /// Pub/Sub subscriptions (None: never subscribed).
    pub subs: Option<Box<crate::pubsub::ConnSubs>>,
    /// Pub/Sub messages were written to `wbuf` and the connection is queued to be flushed.
    pub flush_queued: bool,
    /// The TLS session of a connection to the TLS port (see `crate::tls`).
    pub tls: Option<Box<crate::tls::Session>>,
    /// MONITOR: receives every command (see `crate::monitor`).
    pub monitor: bool,
    /// CLIENT NO-EVICT.
    pub no_evict: bool,
    /// CLIENT TRACKING's state (None: off).
    pub tracking: Option<Box<crate::tracking::State>>,
    /// The reads of the command being dispatched are remembered for client-side caching.
    pub track_now: bool,
    /// Invalidation messages held until the reply on its way is written.
    pub push_later: Vec<u8>,
    /// What a replica told with REPLCONF: its listening port, and `capa eof`.
    pub repl_port: u16,
    /// REPLCONF ip-address: the address the replica announces.
    pub repl_ip: Option<String>,
    pub repl_eof: bool,
    /// The connection a replica runs its master's stream on (see `crate::repl::replica`).
    pub master_link: bool,
    /// CLIENT REPLY: whether commands get replies.
    pub reply_mode: ReplyMode,
    /// Where the output of a command whose reply is suppressed began; cut back to it once the
    /// command is done.
    pub mute_mark: Option<usize>,
    /// Held by CLIENT PAUSE (listed in the shard's `paused`).
    pub paused: bool,
    /// Cluster mode: ASKING was sent (served once, for an importing slot).
    pub asking: bool,
    /// Cluster mode: READONLY (a replica serves reads for its master's slots).
    pub cluster_readonly: bool,
    /// Cluster mode: the answer to a probe (see `crate::cluster::route`): for the command
    /// being checked again, its slot, its key count, and how many of its keys are missing.
    pub cluster_missing: Option<(u16, usize, usize)>,
}

/// CLIENT REPLY's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    /// No reply for the next command only.
    Skip,
}

impl Conn {
    pub fn new(fd: RawFd, token: Token, id: u64, addr: String, laddr: String, now_ms: u64) -> Conn {
        let local_client = addr.starts_with("127.") || addr.starts_with("[::1]");
        Conn {
            fd,
            token,
            id,
            addr,
            laddr,
            name: None,
            db: 0,
            proto: Proto::Resp2,
            authenticated: false,
            user: None,
            acl_gen: 0,
            rbuf: Vec::with_capacity(16 * 1024),
            rpos: 0,
            ranges: Vec::new(),
            scratch: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            wait: Wait::None,
            seq: 0,
            close_after_reply: false,
            retry_deadline: None,
            retry_cmd: None,
            woken: false,
            multi: None,
            watching: Vec::new(),
            inject: Vec::new(),
            reroute_keys: None,
            reroutes: 0,
            out_soft_since: None,
            live: None,
            tx_open: None,
            want_write: false,
            read_paused: false,
            created_ms: now_ms,
            last_ms: now_ms,
            last_cmd: ("NULL", None),
            local_client,
            hold_until: 0,
            held_len: 0,
            subs: None,
            flush_queued: false,
            monitor: false,
            no_evict: false,
            tracking: None,
            track_now: false,
            push_later: Vec::new(),
            repl_port: 0,
            repl_ip: None,
            repl_eof: false,
            master_link: false,
            reply_mode: ReplyMode::On,
            mute_mark: None,
            paused: false,
            asking: false,
            cluster_readonly: false,
            cluster_missing: None,
            tls: None,
        }
    }

    /// The shard this connection is blocked on, if it is blocked.
    pub fn wait_shard(&self) -> Option<usize> {
        match self.wait {
            Wait::Blocked { shard } => Some(shard),
            _ => None,
        }
    }

    /// The transaction this connection's requests run in (0: none).
    pub fn tx_id(&self) -> u64 {
        self.live.as_ref().map_or(0, |b| b.tx)
    }

    pub fn waiting(&self) -> bool {
        !matches!(self.wait, Wait::None)
    }

    /// A reply writer on the output buffer.
    pub fn reply(&mut self) -> Reply<'_> {
        Reply::new(&mut self.wbuf, self.proto)
    }

    pub fn error(&mut self, text: &str) {
        self.reply().error(text);
    }

    /// Bytes of output not yet written.
    pub fn pending_output(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Reads what the socket has into the query buffer, at most `max` bytes (on a TLS
    /// connection: all that one read of at most 16 KiB of ciphertext decrypts to). Ok(0): the
    /// peer closed.
    pub fn read_input(&mut self, max: usize) -> std::io::Result<usize> {
        match self.tls.as_deref_mut() {
            None => crate::net::read_into(self.fd, &mut self.rbuf, max),
            Some(tls) => tls.read_into(self.fd, &mut self.rbuf),
        }
    }

    /// Writes pending output (through TLS, on a TLS connection); how much of it was taken.
    pub fn write_output(&mut self) -> std::io::Result<usize> {
        let out = &self.wbuf[self.wpos..];
        match self.tls.as_deref_mut() {
            None => crate::net::write(self.fd, out),
            Some(tls) => tls.write(self.fd, out),
        }
    }

    /// All output has been written: the buffer starts over (and so does the output of a
    /// command whose reply is suppressed).
    pub fn output_written(&mut self) {
        self.wbuf.clear();
        self.wpos = 0;
        if let Some(m) = self.mute_mark.as_mut() {
            *m = 0;
        }
    }

    /// Redis's client type: `pubsub` while subscribed, else `normal` (monitors included).
    pub fn kind(&self) -> &'static str {
        let (a, b, c) = crate::pubsub::counts(self);
        if a + b + c > 0 {
            "pubsub"
        } else {
            "normal"
        }
    }

    /// The CLIENT LIST / CLIENT INFO line for this connection.
    pub fn info_line(&self, now_ms: u64) -> String {
        let name = self
            .name
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        // While its commands run, the connection's input is taken out (empty here).
        let qbuf = self.rbuf.len().saturating_sub(self.rpos);
        let events = if self.want_write { "rw" } else { "r" };
        // Redis's flag letters, in its order.
        let (sub, psub, ssub) = crate::pubsub::counts(self);
        let mut flags = String::new();
        if self.monitor {
            flags.push('O');
        }
        if sub + psub + ssub > 0 {
            flags.push('P');
        }
        if self.multi.is_some() {
            flags.push('x');
        }
        if matches!(self.wait, Wait::Blocked { .. } | Wait::Retry) {
            flags.push('b');
        }
        let (track_flags, redir) = crate::tracking::list_flags(self);
        flags.push_str(track_flags);
        if self.close_after_reply {
            flags.push('c');
        }
        if self.no_evict {
            flags.push('e');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let multi = self.multi.as_ref().map_or(-1, |m| m.queued.len() as i64);
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} multi={} qbuf={} qbuf-free={} argv-mem=0 multi-mem=0 rbs={} rbp=0 obl=0 oll=0 omem={} tot-mem={} events={} cmd={} user={} redir={} resp={}\n",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            name,
            now_ms.saturating_sub(self.created_ms) / 1000,
            now_ms.saturating_sub(self.last_ms) / 1000,
            flags,
            self.db,
            sub,
            psub,
            ssub,
            multi,
            qbuf,
            self.rbuf.capacity() - self.rbuf.len(),
            self.rbuf.capacity(),
            self.wbuf.capacity(),
            self.rbuf.capacity() + self.wbuf.capacity() + std::mem::size_of::<Conn>(),
            events,
            match self.last_cmd {
                (c, Some(sub)) => format!("{c}|{sub}"),
                (c, None) => c.to_string(),
            },
            self.user
                .as_ref()
                .map_or(std::borrow::Cow::Borrowed(""), |u| String::from_utf8_lossy(&u.name)),
            redir,
            if self.proto == Proto::Resp3 { 3 } else { 2 },
        )
    }
}

/// A shard's connections, addressed by [`Token`]. `live` counts reserved tokens. A connection being processed is taken out of
/// its slot (so code it runs may look at the others) and put back afterwards.
#[derive(Default)]
pub struct Slab {
    slots: Vec<(u32, Option<Box<Conn>>)>,
    free: Vec<u32>,
    pub live: usize,
}

impl Slab {
    /// Reserves a token for a new connection.
    pub fn vacant(&mut self) -> Token {
        self.live += 1;
        if let Some(i) = self.free.pop() {
            return Token {
                index: i,
                generation: self.slots[i as usize].0,
            };
        }
        self.slots.push((0, None));
        Token {
            index: self.slots.len() as u32 - 1,
            generation: 0,
        }
    }

    /// Stores a connection in its reserved slot (or back after work on it).
    pub fn put(&mut self, conn: Box<Conn>) {
        let t = conn.token;
        if let Some(slot) = self.slots.get_mut(t.index as usize) {
            if slot.0 == t.generation {
                slot.1 = Some(conn);
            }
        }
    }

    /// Takes a connection out to work on it; put it back with [`Slab::put_back`].
    pub fn take(&mut self, t: Token) -> Option<Box<Conn>> {
        let slot = self.slots.get_mut(t.index as usize)?;
        if slot.0 != t.generation {
            return None;
        }
        slot.1.take()
    }

    /// Whether the connection of token `t` exists but is out of the table (being served).
    pub fn is_taken(&self, t: Token) -> bool {
        self.slots
            .get(t.index as usize)
            .is_some_and(|s| s.0 == t.generation && s.1.is_none())
    }

    /// The connection of token `t`, if it is in the table.
    pub fn peek(&self, t: Token) -> Option<&Conn> {
        self.slots
            .get(t.index as usize)
            .filter(|s| s.0 == t.generation)
            .and_then(|s| s.1.as_deref())
    }

    /// Whether the connection of token `t` is in the table.
    pub fn contains(&self, t: Token) -> bool {
        self.slots
            .get(t.index as usize)
            .is_some_and(|s| s.0 == t.generation && s.1.is_some())
    }

    pub fn put_back(&mut self, conn: Box<Conn>) {
        self.put(conn);
    }

    /// Frees a token whose connection is gone for good.
    pub fn release(&mut self, t: Token) {
        if let Some(slot) = self.slots.get_mut(t.index as usize) {
            if slot.0 == t.generation {
                slot.1 = None;
                slot.0 = slot.0.wrapping_add(1);
                self.free.push(t.index);
                self.live = self.live.saturating_sub(1);
            }
        }
    }

    /// The client connections (not the shard's internal one).
    pub fn iter(&self) -> impl Iterator<Item = &Conn> {
        self.slots
            .iter()
            .filter_map(|(_, c)| c.as_deref())
            .filter(|c| c.fd >= 0)
    }

    /// Stores the shard's internal connection (no socket; not counted as a client).
    pub fn put_internal(&mut self, conn: Box<Conn>) {
        self.put(conn);
        self.live -= 1;
    }
}
