//! Where a key's requests go: the slot map read from CLUSTER SLOTS (or one address for a
//! standalone server), updated by `-MOVED` redirections.

use crate::keys::SLOTS;
use crate::resp::{self, Reply};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long the blocking CLUSTER SLOTS exchange may take.
const SLOTS_TIMEOUT: Duration = Duration::from_secs(5);

/// The nodes of the cluster and which one serves each slot.
#[derive(Debug, Clone)]
pub struct SlotMap {
    /// `host:port` of each node, in the order they were learnt.
    pub nodes: Vec<String>,
    /// For each slot, its node's index in `nodes`.
    slots: Vec<usize>,
}

impl SlotMap {
    /// A map that sends everything to one address.
    pub fn single(addr: &str) -> SlotMap {
        SlotMap {
            nodes: vec![addr.to_string()],
            slots: vec![0; SLOTS as usize],
        }
    }

    /// Reads CLUSTER SLOTS from `addr`. A server without cluster support (an error reply)
    /// gives the one-address map.
    pub fn fetch(addr: &str) -> Result<SlotMap, String> {
        let reply = command(addr, &["CLUSTER", "SLOTS"])?;
        let ranges = match reply {
            Reply::Error(_) => return Ok(SlotMap::single(addr)),
            Reply::Array(Some(ranges)) => ranges,
            other => return Err(format!("CLUSTER SLOTS from {addr} replied {other}")),
        };
        let mut map = SlotMap::single(addr);
        let mut covered = 0;
        for range in &ranges {
            let (start, end, node) = parse_range(range)
                .ok_or_else(|| format!("CLUSTER SLOTS from {addr}: bad range {range}"))?;
            for slot in start..=end {
                map.set(slot, &node);
                covered += 1;
            }
        }
        if covered < SLOTS as usize {
            eprintln!(
                "warning: CLUSTER SLOTS covers {covered} of {SLOTS} slots; the rest go to {addr}"
            );
        }
        Ok(map)
    }

    /// The node index serving `slot`.
    pub fn node_of(&self, slot: u16) -> usize {
        self.slots[slot as usize]
    }

    /// The index of `node` (`host:port`), adding it when new.
    pub fn node_index(&mut self, node: &str) -> usize {
        match self.nodes.iter().position(|n| n == node) {
            Some(i) => i,
            None => {
                self.nodes.push(node.to_string());
                self.nodes.len() - 1
            }
        }
    }

    /// Takes every slot's owner from `fresh`, keeping this map's node indices.
    pub fn merge(&mut self, fresh: &SlotMap) {
        for slot in 0..SLOTS {
            let node = &fresh.nodes[fresh.node_of(slot)];
            self.set(slot, node);
        }
    }

    /// Records that `node` serves `slot` (what a `-MOVED` says).
    pub fn set(&mut self, slot: u16, node: &str) {
        let index = self.node_index(node);
        self.slots[slot as usize % SLOTS as usize] = index;
    }
}

/// `[start, end, [host, port, ...], ...]` → (start, end, "host:port").
fn parse_range(range: &Reply) -> Option<(u16, u16, String)> {
    let Reply::Array(Some(items)) = range else {
        return None;
    };
    let (Some(Reply::Int(start)), Some(Reply::Int(end)), Some(Reply::Array(Some(master)))) =
        (items.first(), items.get(1), items.get(2))
    else {
        return None;
    };
    let (Some(Reply::Bulk(Some(host))), Some(Reply::Int(port))) = (master.first(), master.get(1))
    else {
        return None;
    };
    let start = u16::try_from(*start).ok().filter(|&s| s < SLOTS)?;
    let end = u16::try_from(*end)
        .ok()
        .filter(|&e| e < SLOTS && e >= start)?;
    let host = String::from_utf8_lossy(host);
    let host = if host.is_empty() {
        "127.0.0.1".into()
    } else {
        host
    };
    Some((start, end, format!("{host}:{port}")))
}

/// Sends one command over a fresh connection and reads its reply.
pub fn command(addr: &str, args: &[&str]) -> Result<Reply, String> {
    let fail = |e: std::io::Error| format!("{addr}: {e}");
    let mut stream = TcpStream::connect(addr).map_err(fail)?;
    stream.set_read_timeout(Some(SLOTS_TIMEOUT)).map_err(fail)?;
    let mut out = Vec::new();
    resp::encode(args, &mut out);
    stream.write_all(&out).map_err(fail)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match resp::parse(&buf) {
            Ok(Some((reply, _))) => return Ok(reply),
            Ok(None) => {}
            Err(e) => return Err(format!("{addr}: {}", e.0)),
        }
        let n = stream.read(&mut chunk).map_err(fail)?;
        if n == 0 {
            return Err(format!("{addr}: connection closed before the reply"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.as_bytes().to_vec()))
    }

    fn range(start: i64, end: i64, host: &str, port: i64) -> Reply {
        let node = Reply::Array(Some(vec![bulk(host), Reply::Int(port), bulk("id")]));
        Reply::Array(Some(vec![Reply::Int(start), Reply::Int(end), node]))
    }

    #[test]
    fn ranges_parse_and_refuse_nonsense() {
        assert_eq!(
            parse_range(&range(0, 5460, "127.0.0.1", 7000)),
            Some((0, 5460, "127.0.0.1:7000".into()))
        );
        assert_eq!(
            parse_range(&range(5, 5, "", 7001)),
            Some((5, 5, "127.0.0.1:7001".into()))
        );
        assert_eq!(parse_range(&range(5, 4, "h", 1)), None);
        assert_eq!(parse_range(&range(0, 16384, "h", 1)), None);
        assert_eq!(parse_range(&Reply::Int(3)), None);
    }

    #[test]
    fn merging_keeps_node_indices() {
        let mut map = SlotMap::single("a:1");
        map.set(7, "b:2");
        let mut fresh = SlotMap::single("c:3");
        fresh.set(7, "a:1");
        map.merge(&fresh);
        assert_eq!(map.nodes, ["a:1", "b:2", "c:3"]);
        assert_eq!(map.node_of(7), 0);
        assert_eq!(map.node_of(8), 2);
    }
}
