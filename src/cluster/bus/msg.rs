//! The cluster bus wire format: Redis 7.0's `clusterMsg` (cluster.h), byte for byte.
//!
//! A message is a fixed 2256-byte header (signature `RCmb`, total length, version 1, the
//! sender's ports, type, epochs, replication offset, name, slot bitmap, master, IP, flags and
//! cluster state) followed by a body whose shape the type decides: gossip sections plus ping
//! extensions (PING, PONG, MEET), a node name (FAIL), channel and message (PUBLISH,
//! PUBLISHSHARD), a node's epoch and slots (UPDATE), a module payload (MODULE), or nothing
//! (FAILOVER_AUTH_REQUEST / ACK, MFSTART). Multi-byte integers are big-endian (Redis writes
//! them with `htons`/`htonl`/`htonu64`); names are 40 bytes without a terminator; IPs are 46
//! bytes, NUL-padded; a slot's bit is bit `slot & 7` of byte `slot / 8`.
//!
//! Decoding is total: every length is checked against the bytes received, and anything that
//! does not add up is an [`Error`] (the caller drops the link), never a panic.

/// Bytes of a node name.
pub const NAME_LEN: usize = 40;
/// Bytes of an IP field (NET_IP_STR_LEN).
pub const IP_LEN: usize = 46;
/// Bytes of a slot bitmap.
pub const SLOT_BYTES: usize = shards::limits::SLOTS / 8;
/// The header: everything before the body (CLUSTERMSG_MIN_LEN).
pub const HEADER_LEN: usize = 2256;
/// One gossip section (clusterMsgDataGossip).
pub const GOSSIP_LEN: usize = 104;
/// The largest message accepted: a PUBLISH carries a whole pub/sub message, which Redis bounds
/// only by `proto-max-bulk-len`; this is the bus's own bound.
pub const MSG_LEN_MAX: usize = 64 * 1024 * 1024;
/// Protocol version (CLUSTER_PROTO_VER).
pub const VERSION: u16 = 1;
/// The signature every message starts with.
pub const SIG: &[u8; 4] = b"RCmb";

/// Message types.
pub mod mtype {
    pub const PING: u16 = 0;
    pub const PONG: u16 = 1;
    pub const MEET: u16 = 2;
    pub const FAIL: u16 = 3;
    pub const PUBLISH: u16 = 4;
    pub const FAILOVER_AUTH_REQUEST: u16 = 5;
    pub const FAILOVER_AUTH_ACK: u16 = 6;
    pub const UPDATE: u16 = 7;
    pub const MFSTART: u16 = 8;
    pub const MODULE: u16 = 9;
    pub const PUBLISHSHARD: u16 = 10;
    /// How many types there are (the stats arrays' size).
    pub const COUNT: usize = 11;
    /// CLUSTER INFO's names for them.
    pub const NAMES: [&str; COUNT] = [
        "ping",
        "pong",
        "meet",
        "fail",
        "publish",
        "auth-req",
        "auth-ack",
        "update",
        "mfstart",
        "module",
        "publishshard",
    ];
}

/// Node flags as the bus carries them (CLUSTER_NODE_*; the whole table, used or not).
#[allow(dead_code)]
pub mod flag {
    pub const MASTER: u16 = 1;
    pub const SLAVE: u16 = 2;
    pub const PFAIL: u16 = 4;
    pub const FAIL: u16 = 8;
    pub const MYSELF: u16 = 16;
    pub const HANDSHAKE: u16 = 32;
    pub const NOADDR: u16 = 64;
    pub const MEET: u16 = 128;
    pub const MIGRATE_TO: u16 = 256;
    pub const NOFAILOVER: u16 = 512;
}

/// Bits of `mflags[0]`.
pub mod mflag {
    /// The master is paused for a manual failover.
    pub const PAUSED: u8 = 1;
    /// Vote even though the master is not failing (manual failover).
    pub const FORCEACK: u8 = 2;
    /// PING/PONG/MEET carry extensions.
    pub const EXT_DATA: u8 = 4;
}

/// Ping extension types (the whole table, used or not).
#[allow(dead_code)]
pub mod ext {
    pub const HOSTNAME: u16 = 0;
    pub const HUMAN_NODENAME: u16 = 1;
    pub const FORGOTTEN_NODE: u16 = 2;
    pub const SHARDID: u16 = 3;
}

/// A node name as it travels: 40 bytes.
pub type Name = [u8; NAME_LEN];

/// The all-zero name (no master).
pub const NO_NAME: Name = [0; NAME_LEN];

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Signature,
    Length(usize),
    /// The total length does not match what the type and counts say.
    Mismatch {
        totlen: usize,
        expected: usize,
    },
    Extension,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Signature => write!(f, "bad signature"),
            Error::Length(n) => write!(f, "bad message length {n}"),
            Error::Mismatch { totlen, expected } => {
                write!(f, "message length {totlen}, expected {expected}")
            }
            Error::Extension => write!(f, "bad ping extension"),
        }
    }
}

/// The header (every field but the signature, the length and the counts, which encoding
/// derives from the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The protocol version (1; a node ignores messages of another version).
    pub version: u16,
    pub mtype: u16,
    pub port: u16,
    pub current_epoch: u64,
    pub config_epoch: u64,
    pub offset: u64,
    pub sender: Name,
    pub slots: Box<[u8; SLOT_BYTES]>,
    /// The master's name, all zeros for a master.
    pub slaveof: Name,
    /// The sender's IP as it announces it; empty: take the address the link comes from.
    pub myip: String,
    pub pport: u16,
    pub cport: u16,
    pub flags: u16,
    /// 0: the sender sees the cluster ok; 1: failing.
    pub state: u8,
    pub mflags: [u8; 3],
}

impl Header {
    pub fn new(mtype: u16, sender: Name) -> Header {
        Header {
            version: VERSION,
            mtype,
            port: 0,
            current_epoch: 0,
            config_epoch: 0,
            offset: 0,
            sender,
            slots: Box::new([0; SLOT_BYTES]),
            slaveof: NO_NAME,
            myip: String::new(),
            pport: 0,
            cport: 0,
            flags: 0,
            state: 0,
            mflags: [0; 3],
        }
    }

    /// Whether the sender claims the slot.
    pub fn has_slot(&self, slot: usize) -> bool {
        slot_bit(&self.slots, slot)
    }
}

/// Whether a bitmap has the slot's bit.
pub fn slot_bit(bitmap: &[u8; SLOT_BYTES], slot: usize) -> bool {
    bitmap
        .get(slot / 8)
        .is_some_and(|b| b & (1 << (slot & 7)) != 0)
}

/// Sets the slot's bit.
pub fn set_slot_bit(bitmap: &mut [u8; SLOT_BYTES], slot: usize) {
    if let Some(b) = bitmap.get_mut(slot / 8) {
        *b |= 1 << (slot & 7);
    }
}

/// What a node says about another in a PING/PONG/MEET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gossip {
    pub name: Name,
    /// Seconds (Unix time) of the last PING sent to it, 0: none pending.
    pub ping_sent: u32,
    /// Seconds (Unix time) of the last PONG received from it.
    pub pong_received: u32,
    pub ip: String,
    pub port: u16,
    pub cport: u16,
    pub flags: u16,
    pub pport: u16,
}

/// A ping extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ext {
    Hostname(String),
    HumanNodename(String),
    /// A node the cluster forgets, for `ttl` more seconds (7.2; 7.0 skips it).
    ForgottenNode {
        name: Name,
        ttl: u64,
    },
    /// An extension we do not read: kept so it can be counted.
    Other {
        kind: u16,
        data: Vec<u8>,
    },
}

/// What follows the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// PING, PONG, MEET.
    Ping { gossip: Vec<Gossip>, exts: Vec<Ext> },
    /// FAIL: the node that failed.
    Fail { name: Name },
    /// PUBLISH, PUBLISHSHARD.
    Publish { channel: Vec<u8>, message: Vec<u8> },
    /// UPDATE: a node's config epoch and slots.
    Update {
        config_epoch: u64,
        name: Name,
        slots: Box<[u8; SLOT_BYTES]>,
    },
    /// MODULE: read and ignored (no modules here).
    Module {
        module_id: u64,
        kind: u8,
        payload: Vec<u8>,
    },
    /// FAILOVER_AUTH_REQUEST, FAILOVER_AUTH_ACK, MFSTART, and types we do not know.
    Empty,
}

/// One bus message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub body: Body,
}

/// If `buf` starts with a whole message, its length; `Ok(None)` while more bytes are needed.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, Error> {
    if buf.len() < 8 {
        return Ok(None);
    }
    if &buf[..4] != SIG {
        return Err(Error::Signature);
    }
    let totlen = be32(buf, 4) as usize;
    if !(HEADER_LEN..=MSG_LEN_MAX).contains(&totlen) {
        return Err(Error::Length(totlen));
    }
    Ok((buf.len() >= totlen).then_some(totlen))
}

fn be16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_be_bytes(a)
    })
}

fn name_at(b: &[u8], at: usize) -> Name {
    let mut n = NO_NAME;
    if let Some(s) = b.get(at..at + NAME_LEN) {
        n.copy_from_slice(s);
    }
    n
}

/// A NUL-terminated (or full-width) string field.
fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn bitmap_at(b: &[u8], at: usize) -> Box<[u8; SLOT_BYTES]> {
    let mut m = Box::new([0u8; SLOT_BYTES]);
    if let Some(s) = b.get(at..at + SLOT_BYTES) {
        m.copy_from_slice(s);
    }
    m
}

/// Decodes one whole message (`buf` is exactly the frame [`frame_len`] found). Messages of
/// another protocol version decode with an empty body; the caller ignores them as Redis does.
pub fn decode(buf: &[u8]) -> Result<Message, Error> {
    if buf.len() < HEADER_LEN {
        return Err(Error::Length(buf.len()));
    }
    if &buf[..4] != SIG {
        return Err(Error::Signature);
    }
    let totlen = be32(buf, 4) as usize;
    if totlen != buf.len() {
        return Err(Error::Mismatch {
            totlen,
            expected: buf.len(),
        });
    }
    let ver = be16(buf, 8);
    let mtype = be16(buf, 12);
    let count = be16(buf, 14) as usize;
    let mut slaveof = name_at(buf, 2128);
    if slaveof.iter().all(|&c| c == 0) {
        slaveof = NO_NAME;
    }
    let header = Header {
        version: ver,
        mtype,
        port: be16(buf, 10),
        current_epoch: be64(buf, 16),
        config_epoch: be64(buf, 24),
        offset: be64(buf, 32),
        sender: name_at(buf, 40),
        slots: bitmap_at(buf, 80),
        slaveof,
        myip: cstr(&buf[2168..2168 + IP_LEN]),
        pport: be16(buf, 2246),
        cport: be16(buf, 2248),
        flags: be16(buf, 2250),
        state: buf[2252],
        mflags: [buf[2253], buf[2254], buf[2255]],
    };
    let extensions = be16(buf, 2214) as usize;
    let data = &buf[HEADER_LEN..];
    if ver != VERSION {
        return Ok(Message {
            header,
            body: Body::Empty,
        });
    }
    let expect = |n: usize| -> Result<(), Error> {
        if n == data.len() {
            Ok(())
        } else {
            Err(Error::Mismatch {
                totlen,
                expected: HEADER_LEN + n,
            })
        }
    };
    let body = match mtype {
        mtype::PING | mtype::PONG | mtype::MEET => {
            let glen = count * GOSSIP_LEN;
            if glen > data.len() {
                return Err(Error::Mismatch {
                    totlen,
                    expected: HEADER_LEN + glen,
                });
            }
            let gossip = data[..glen]
                .chunks_exact(GOSSIP_LEN)
                .map(decode_gossip)
                .collect();
            let exts = if header.mflags[0] & mflag::EXT_DATA != 0 {
                decode_exts(&data[glen..], extensions)?
            } else {
                expect(glen)?;
                Vec::new()
            };
            Body::Ping { gossip, exts }
        }
        mtype::FAIL => {
            expect(NAME_LEN)?;
            Body::Fail {
                name: name_at(data, 0),
            }
        }
        mtype::PUBLISH | mtype::PUBLISHSHARD => {
            if data.len() < 8 {
                return Err(Error::Length(totlen));
            }
            let clen = be32(data, 0) as usize;
            let mlen = be32(data, 4) as usize;
            // Redis counts the 8-byte placeholder in, so a message is at least 16 bytes long.
            expect((8 + clen + mlen).max(16))?;
            let channel = data[8..8 + clen].to_vec();
            let message = data[8 + clen..8 + clen + mlen].to_vec();
            Body::Publish { channel, message }
        }
        mtype::UPDATE => {
            expect(8 + NAME_LEN + SLOT_BYTES)?;
            Body::Update {
                config_epoch: be64(data, 0),
                name: name_at(data, 8),
                slots: bitmap_at(data, 8 + NAME_LEN),
            }
        }
        mtype::MODULE => {
            if data.len() < 16 {
                return Err(Error::Length(totlen));
            }
            let len = be32(data, 8) as usize;
            expect((13 + len).max(16))?;
            Body::Module {
                module_id: be64(data, 0),
                kind: data[12],
                payload: data[13..13 + len].to_vec(),
            }
        }
        mtype::FAILOVER_AUTH_REQUEST | mtype::FAILOVER_AUTH_ACK | mtype::MFSTART => {
            expect(0)?;
            Body::Empty
        }
        _ => Body::Empty,
    };
    Ok(Message { header, body })
}

fn decode_gossip(g: &[u8]) -> Gossip {
    Gossip {
        name: name_at(g, 0),
        ping_sent: be32(g, 40),
        pong_received: be32(g, 44),
        ip: cstr(&g[48..48 + IP_LEN]),
        port: be16(g, 94),
        cport: be16(g, 96),
        flags: be16(g, 98),
        pport: be16(g, 100),
    }
}

/// `n` extensions filling `data` exactly, each `length u32, type u16, unused u16, payload`,
/// its length a multiple of 8.
fn decode_exts(data: &[u8], n: usize) -> Result<Vec<Ext>, Error> {
    let mut out = Vec::new();
    let mut at = 0;
    for _ in 0..n {
        if data.len() - at < 8 {
            return Err(Error::Extension);
        }
        let len = be32(data, at) as usize;
        let kind = be16(data, at + 4);
        if len < 8 || !len.is_multiple_of(8) || len > data.len() - at {
            return Err(Error::Extension);
        }
        let payload = &data[at + 8..at + len];
        out.push(match kind {
            ext::HOSTNAME => Ext::Hostname(cstr(payload)),
            ext::HUMAN_NODENAME => Ext::HumanNodename(cstr(payload)),
            ext::FORGOTTEN_NODE if payload.len() >= NAME_LEN + 8 => Ext::ForgottenNode {
                name: name_at(payload, 0),
                ttl: be64(payload, NAME_LEN),
            },
            _ => Ext::Other {
                kind,
                data: payload.to_vec(),
            },
        });
        at += len;
    }
    if at != data.len() {
        return Err(Error::Extension);
    }
    Ok(out)
}

fn put_str(out: &mut Vec<u8>, s: &str, width: usize) {
    let b = s.as_bytes();
    let n = b.len().min(width - 1);
    out.extend_from_slice(&b[..n]);
    out.resize(out.len() + width - n, 0);
}

impl Message {
    /// The message's bytes, with its total length, counts and `EXT_DATA` flag filled in.
    pub fn encode(&self) -> Vec<u8> {
        let h = &self.header;
        let mut out = Vec::with_capacity(HEADER_LEN + 256);
        out.extend_from_slice(SIG);
        out.extend_from_slice(&[0; 4]); // totlen, set at the end
        out.extend_from_slice(&h.version.to_be_bytes());
        out.extend_from_slice(&h.port.to_be_bytes());
        out.extend_from_slice(&h.mtype.to_be_bytes());
        let (count, nexts) = match &self.body {
            Body::Ping { gossip, exts } => (gossip.len() as u16, exts.len() as u16),
            _ => (0, 0),
        };
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&h.current_epoch.to_be_bytes());
        out.extend_from_slice(&h.config_epoch.to_be_bytes());
        out.extend_from_slice(&h.offset.to_be_bytes());
        out.extend_from_slice(&h.sender);
        out.extend_from_slice(&h.slots[..]);
        out.extend_from_slice(&h.slaveof);
        put_str(&mut out, &h.myip, IP_LEN);
        out.extend_from_slice(&nexts.to_be_bytes());
        out.extend_from_slice(&[0; 30]);
        out.extend_from_slice(&h.pport.to_be_bytes());
        out.extend_from_slice(&h.cport.to_be_bytes());
        out.extend_from_slice(&h.flags.to_be_bytes());
        out.push(h.state);
        let mut mflags = h.mflags;
        if nexts > 0 {
            mflags[0] |= mflag::EXT_DATA;
        }
        out.extend_from_slice(&mflags);
        debug_assert_eq!(out.len(), HEADER_LEN);
        self.encode_body(&mut out);
        let totlen = (out.len() as u32).to_be_bytes();
        out[4..8].copy_from_slice(&totlen);
        out
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        match &self.body {
            Body::Ping { gossip, exts } => {
                for g in gossip {
                    out.extend_from_slice(&g.name);
                    out.extend_from_slice(&g.ping_sent.to_be_bytes());
                    out.extend_from_slice(&g.pong_received.to_be_bytes());
                    put_str(out, &g.ip, IP_LEN);
                    out.extend_from_slice(&g.port.to_be_bytes());
                    out.extend_from_slice(&g.cport.to_be_bytes());
                    out.extend_from_slice(&g.flags.to_be_bytes());
                    out.extend_from_slice(&g.pport.to_be_bytes());
                    out.extend_from_slice(&[0; 2]);
                }
                for e in exts {
                    encode_ext(out, e);
                }
            }
            Body::Fail { name } => out.extend_from_slice(name),
            Body::Publish { channel, message } => {
                out.extend_from_slice(&(channel.len() as u32).to_be_bytes());
                out.extend_from_slice(&(message.len() as u32).to_be_bytes());
                out.extend_from_slice(channel);
                out.extend_from_slice(message);
                let used = 8 + channel.len() + message.len();
                out.resize(out.len() + 16usize.saturating_sub(used), 0);
            }
            Body::Update {
                config_epoch,
                name,
                slots,
            } => {
                out.extend_from_slice(&config_epoch.to_be_bytes());
                out.extend_from_slice(name);
                out.extend_from_slice(&slots[..]);
            }
            Body::Module {
                module_id,
                kind,
                payload,
            } => {
                out.extend_from_slice(&module_id.to_be_bytes());
                out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                out.push(*kind);
                out.extend_from_slice(payload);
                let used = 13 + payload.len();
                out.resize(out.len() + 16usize.saturating_sub(used), 0);
            }
            Body::Empty => {}
        }
    }
}

/// One extension, its payload padded with NULs to a multiple of 8 (a string keeps at least one
/// terminating NUL, as Redis's `getHostnamePingExtSize`).
fn encode_ext(out: &mut Vec<u8>, e: &Ext) {
    let (kind, mut payload) = match e {
        Ext::Hostname(s) => (ext::HOSTNAME, [s.as_bytes(), &[0]].concat()),
        Ext::HumanNodename(s) => (ext::HUMAN_NODENAME, [s.as_bytes(), &[0]].concat()),
        Ext::ForgottenNode { name, ttl } => (
            ext::FORGOTTEN_NODE,
            [&name[..], &ttl.to_be_bytes()].concat(),
        ),
        Ext::Other { kind, data } => (*kind, data.clone()),
    };
    payload.resize(payload.len().div_ceil(8) * 8, 0);
    out.extend_from_slice(&((8 + payload.len()) as u32).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&[0; 2]);
    out.extend_from_slice(&payload);
}

/// A name from a node id string (40 hex characters; anything else is padded or cut).
pub fn name_of(id: &str) -> Name {
    let mut n = NO_NAME;
    for (d, s) in n.iter_mut().zip(id.bytes()) {
        *d = s;
    }
    n
}

/// The node id a name spells, if it is one (40 hex characters).
pub fn id_of(name: &Name) -> Option<String> {
    name.iter()
        .all(|c| c.is_ascii_hexdigit())
        .then(|| String::from_utf8_lossy(name).to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
