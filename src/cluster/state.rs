//! The cluster configuration one node holds: itself, the nodes it knows, who owns each of the
//! 16384 slots, the slots it is migrating or importing, and the epochs. It reads and writes
//! Redis's `nodes.conf` format (the lines of CLUSTER NODES plus a `vars` line), so a file
//! written by redis-server loads here and the reverse.
//!
//! A `State` is a plain value: the node shares it as an immutable snapshot and changes a copy
//! (see [`super`]).

use std::collections::BTreeMap;

/// Redis Cluster's slot count.
pub const SLOTS: usize = shards::limits::SLOTS;

/// No node serves the slot.
const NONE: u16 = u16::MAX;

/// Node flags, as CLUSTER NODES names them (in its order).
pub mod nflag {
    pub const MYSELF: u16 = 1 << 0;
    pub const MASTER: u16 = 1 << 1;
    pub const SLAVE: u16 = 1 << 2;
    pub const PFAIL: u16 = 1 << 3;
    pub const FAIL: u16 = 1 << 4;
    pub const HANDSHAKE: u16 = 1 << 5;
    pub const NOADDR: u16 = 1 << 6;
    pub const NOFAILOVER: u16 = 1 << 7;
    /// The bus greets this node with MEET rather than PING (not shown, not saved).
    pub const MEET: u16 = 1 << 8;
    pub const NAMES: &[(u16, &str)] = &[
        (MYSELF, "myself"),
        (MASTER, "master"),
        (SLAVE, "slave"),
        (PFAIL, "fail?"),
        (FAIL, "fail"),
        (HANDSHAKE, "handshake"),
        (NOADDR, "noaddr"),
        (NOFAILOVER, "nofailover"),
    ];
}

/// One node as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// 40 lower-case hex characters.
    pub id: String,
    /// Empty while unknown (a node learns its own address from its peers).
    pub ip: String,
    pub port: u16,
    pub cport: u16,
    pub hostname: String,
    pub flags: u16,
    /// The master's id, for a replica.
    pub master: Option<String>,
    pub ping_sent_ms: u64,
    pub pong_recv_ms: u64,
    pub config_epoch: u64,
    /// Whether a bus link to it is up (always true for this node itself).
    pub connected: bool,
}

impl Node {
    pub fn new(id: String, ip: String, port: u16, cport: u16, flags: u16) -> Node {
        Node {
            id,
            ip,
            port,
            cport,
            hostname: String::new(),
            flags,
            master: None,
            ping_sent_ms: 0,
            pong_recv_ms: 0,
            config_epoch: 0,
            connected: false,
        }
    }

    pub fn is_master(&self) -> bool {
        self.flags & nflag::MASTER != 0
    }

    /// CLUSTER NODES's flags field.
    pub fn flags_text(&self) -> String {
        let names: Vec<&str> = nflag::NAMES
            .iter()
            .filter(|(f, _)| self.flags & f != 0)
            .map(|(_, n)| *n)
            .collect();
        if names.is_empty() {
            "noflags".into()
        } else {
            names.join(",")
        }
    }
}

/// A new random node id (from the kernel's random source; the clock and pid if that fails).
pub fn random_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 20];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ ((std::process::id() as u64) << 32);
        let mut rng = shards::rng::Rng::new(seed);
        for b in bytes.iter_mut() {
            *b = rng.below(256) as u8;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `s` looks like a node id.
pub fn valid_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The configuration: nodes (this node first), slot owners, open slots and epochs.
#[derive(Debug, Clone)]
pub struct State {
    pub nodes: Vec<Node>,
    /// Each slot's owner, as an index into `nodes` (NONE: unassigned).
    slots: Vec<u16>,
    /// Slots this node is moving out, and to whom (node id).
    pub migrating: BTreeMap<u16, String>,
    /// Slots this node is taking in, and from whom (node id).
    pub importing: BTreeMap<u16, String>,
    pub current_epoch: u64,
    pub last_vote_epoch: u64,
    /// Forgotten nodes the bus does not re-add, until a Unix time in seconds (CLUSTER FORGET's
    /// 60-second blacklist).
    pub blacklist: BTreeMap<String, u64>,
    /// `cluster_state:ok`.
    pub ok: bool,
    /// Masters serving at least one slot.
    pub size: usize,
}

impl State {
    /// A fresh node: itself only, a master without slots.
    pub fn new(id: String, port: u16, cport: u16) -> State {
        let mut me = Node::new(
            id,
            String::new(),
            port,
            cport,
            nflag::MYSELF | nflag::MASTER,
        );
        me.connected = true;
        State {
            nodes: vec![me],
            slots: vec![NONE; SLOTS],
            migrating: BTreeMap::new(),
            importing: BTreeMap::new(),
            current_epoch: 0,
            last_vote_epoch: 0,
            blacklist: BTreeMap::new(),
            ok: false,
            size: 0,
        }
    }

    pub fn me(&self) -> &Node {
        &self.nodes[0]
    }

    pub fn me_mut(&mut self) -> &mut Node {
        &mut self.nodes[0]
    }

    /// The index of the node with this exact id.
    pub fn find(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The index of the slot's owner.
    pub fn owner_index(&self, slot: u16) -> Option<usize> {
        match self.slots.get(slot as usize) {
            Some(&i) if i != NONE => Some(i as usize),
            _ => None,
        }
    }

    pub fn owner(&self, slot: u16) -> Option<&Node> {
        self.owner_index(slot).and_then(|i| self.nodes.get(i))
    }

    /// Whether this node serves the slot.
    pub fn mine(&self, slot: u16) -> bool {
        self.owner_index(slot) == Some(0)
    }

    /// Gives the slot to the node at `index` (None: unassigned).
    pub fn assign(&mut self, slot: u16, index: Option<usize>) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = index.map_or(NONE, |i| i as u16);
        }
    }

    /// The slots the node at `index` serves, as inclusive ranges in order.
    pub fn ranges_of(&self, index: usize) -> Vec<(u16, u16)> {
        let mut out: Vec<(u16, u16)> = Vec::new();
        for (slot, &owner) in self.slots.iter().enumerate() {
            if owner as usize != index || owner == NONE {
                continue;
            }
            let slot = slot as u16;
            match out.last_mut() {
                Some(last) if last.1 + 1 == slot => last.1 = slot,
                _ => out.push((slot, slot)),
            }
        }
        out
    }

    /// How many slots are assigned.
    pub fn assigned(&self) -> usize {
        self.slots.iter().filter(|&&o| o != NONE).count()
    }

    /// How many slots are served by nodes with any of `flags`.
    pub fn slots_flagged(&self, flags: u16) -> usize {
        self.slots
            .iter()
            .filter(|&&o| {
                o != NONE
                    && self
                        .nodes
                        .get(o as usize)
                        .is_some_and(|n| n.flags & flags != 0)
            })
            .count()
    }

    /// Removes the node at `index` (never this node), with its slots.
    pub fn remove(&mut self, index: usize) {
        if index == 0 || index >= self.nodes.len() {
            return;
        }
        let gone = self.nodes.remove(index);
        for s in self.slots.iter_mut() {
            if *s == NONE {
                continue;
            }
            match (*s as usize).cmp(&index) {
                std::cmp::Ordering::Equal => *s = NONE,
                std::cmp::Ordering::Greater => *s -= 1,
                std::cmp::Ordering::Less => {}
            }
        }
        self.migrating.retain(|_, id| *id != gone.id);
        self.importing.retain(|_, id| *id != gone.id);
        for n in &mut self.nodes {
            if n.master.as_deref() == Some(gone.id.as_str()) {
                n.master = None;
            }
        }
    }

    /// Recomputes `ok` and `size` as Redis's `clusterUpdateState` does: the cluster is down
    /// when (with full coverage required) a slot is unassigned or its owner failed, or when
    /// fewer than a majority of the masters serving slots are reachable.
    ///
    pub fn update(&mut self, require_full_coverage: bool) {
        let mut ok = true;
        if require_full_coverage {
            ok = self.slots.iter().all(|&o| {
                o != NONE
                    && self
                        .nodes
                        .get(o as usize)
                        .is_some_and(|n| n.flags & nflag::FAIL == 0)
            });
        }
        let mut counts = vec![0usize; self.nodes.len()];
        for &o in &self.slots {
            if let Some(c) = counts.get_mut(o as usize) {
                *c += 1;
            }
        }
        let serving: Vec<&Node> = self
            .nodes
            .iter()
            .zip(&counts)
            .filter(|(n, &c)| n.is_master() && c > 0)
            .map(|(n, _)| n)
            .collect();
        self.size = serving.len();
        let reachable = serving
            .iter()
            .filter(|n| n.flags & (nflag::FAIL | nflag::PFAIL) == 0)
            .count();
        if reachable < self.size / 2 + 1 {
            ok = false;
        }
        self.ok = ok;
    }

    /// The highest config epoch of any node, or the current epoch if higher.
    pub fn max_epoch(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| n.config_epoch)
            .max()
            .unwrap_or(0)
            .max(self.current_epoch)
    }

    /// Gives this node a new config epoch without consensus unless its epoch is already the
    /// highest and unique (Redis's `clusterBumpConfigEpochWithoutConsensus`). Returns whether
    /// it moved.
    pub fn bump_epoch(&mut self) -> bool {
        let max = self.max_epoch();
        let mine = self.me().config_epoch;
        if mine == 0 || mine != max {
            self.current_epoch += 1;
            let e = self.current_epoch;
            self.me_mut().config_epoch = e;
            true
        } else {
            false
        }
    }

    /// One node's CLUSTER NODES line (without the newline). Open slots follow this node's own
    /// ranges, as `[slot->-id]` (migrating) and `[slot-<-id]` (importing).
    pub fn node_line(&self, index: usize) -> String {
        let Some(n) = self.nodes.get(index) else {
            return String::new();
        };
        let mut line = format!("{} {}:{}@{}", n.id, n.ip, n.port, n.cport);
        if !n.hostname.is_empty() {
            line.push(',');
            line.push_str(&n.hostname);
        }
        line.push(' ');
        line.push_str(&n.flags_text());
        line.push(' ');
        line.push_str(n.master.as_deref().unwrap_or("-"));
        let link = if n.connected || index == 0 {
            "connected"
        } else {
            "disconnected"
        };
        line.push_str(&format!(
            " {} {} {} {}",
            n.ping_sent_ms, n.pong_recv_ms, n.config_epoch, link
        ));
        for (a, b) in self.ranges_of(index) {
            if a == b {
                line.push_str(&format!(" {a}"));
            } else {
                line.push_str(&format!(" {a}-{b}"));
            }
        }
        if index == 0 {
            let open = self
                .migrating
                .iter()
                .map(|(s, id)| (*s, "->-", id))
                .chain(self.importing.iter().map(|(s, id)| (*s, "-<-", id)));
            let mut open: Vec<_> = open.collect();
            open.sort_by_key(|(s, _, _)| *s);
            open.dedup_by_key(|(s, _, _)| *s);
            for (s, arrow, id) in open {
                line.push_str(&format!(" [{s}{arrow}{id}]"));
            }
        }
        line
    }

    /// CLUSTER NODES: every node's line, each ending in a newline; nodes in handshake are left
    /// out when `handshake` is false (as in the config file).
    pub fn nodes_text(&self, handshake: bool) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !handshake && n.flags & nflag::HANDSHAKE != 0 {
                continue;
            }
            out.push_str(&self.node_line(i));
            out.push('\n');
        }
        out
    }

    /// The nodes.conf contents.
    pub fn to_config(&self) -> String {
        let mut out = self.nodes_text(false);
        out.push_str(&format!(
            "vars currentEpoch {} lastVoteEpoch {}\n",
            self.current_epoch, self.last_vote_epoch
        ));
        out
    }

    /// Reads a nodes.conf. The line with the `myself` flag becomes this node. Errors name the
    /// line that is wrong.
    pub fn from_config(text: &str) -> Result<State, String> {
        let mut nodes: Vec<Node> = Vec::new();
        let mut owners: Vec<(u16, u16, String)> = Vec::new();
        let mut migrating = BTreeMap::new();
        let mut importing = BTreeMap::new();
        let (mut current_epoch, mut last_vote_epoch) = (0u64, 0u64);
        for (no, line) in text.lines().enumerate() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.is_empty() {
                continue;
            }
            let bad = |what: &str| format!("line {}: {what}: {line}", no + 1);
            if words[0] == "vars" {
                for pair in words[1..].chunks(2) {
                    let [name, value] = pair else {
                        return Err(bad("odd number of vars"));
                    };
                    let v: u64 = value.parse().map_err(|_| bad("bad var value"))?;
                    match *name {
                        "currentEpoch" => current_epoch = v,
                        "lastVoteEpoch" => last_vote_epoch = v,
                        _ => {}
                    }
                }
                continue;
            }
            if words.len() < 8 {
                return Err(bad("too few fields"));
            }
            let id = words[0];
            if !valid_id(id) {
                return Err(bad("bad node id"));
            }
            let (ip, port, cport, hostname) =
                parse_address(words[1]).ok_or_else(|| bad("bad address"))?;
            let mut flags = 0;
            for f in words[2].split(',') {
                match nflag::NAMES.iter().find(|(_, n)| *n == f) {
                    Some((bit, _)) => flags |= bit,
                    None if f == "noflags" => {}
                    None => return Err(bad("unknown flag")),
                }
            }
            let master = match words[3] {
                "-" => None,
                m if valid_id(m) => Some(m.to_string()),
                _ => return Err(bad("bad master id")),
            };
            let num = |s: &str| s.parse::<u64>().map_err(|_| bad("bad number"));
            let mut node = Node::new(id.to_string(), ip, port, cport, flags);
            node.hostname = hostname;
            node.master = master;
            node.ping_sent_ms = num(words[4])?;
            node.pong_recv_ms = num(words[5])?;
            node.config_epoch = num(words[6])?;
            node.connected = flags & nflag::MYSELF != 0;
            for w in &words[8..] {
                if let Some(inner) = w.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
                    let (slot, arrow, other) = if let Some((s, o)) = inner.split_once("->-") {
                        (s, true, o)
                    } else if let Some((s, o)) = inner.split_once("-<-") {
                        (s, false, o)
                    } else {
                        return Err(bad("bad open slot"));
                    };
                    let slot = parse_slot(slot).ok_or_else(|| bad("bad slot"))?;
                    let map = if arrow {
                        &mut migrating
                    } else {
                        &mut importing
                    };
                    map.insert(slot, other.to_string());
                    continue;
                }
                let (a, b) = match w.split_once('-') {
                    Some((a, b)) => (parse_slot(a), parse_slot(b)),
                    None => (parse_slot(w), parse_slot(w)),
                };
                match (a, b) {
                    (Some(a), Some(b)) if a <= b => owners.push((a, b, id.to_string())),
                    _ => return Err(bad("bad slot range")),
                }
            }
            if nodes.iter().any(|n| n.id == id) {
                return Err(bad("duplicate node"));
            }
            nodes.push(node);
        }
        let Some(me) = nodes.iter().position(|n| n.flags & nflag::MYSELF != 0) else {
            return Err("no node with the myself flag".into());
        };
        if nodes
            .iter()
            .filter(|n| n.flags & nflag::MYSELF != 0)
            .count()
            > 1
        {
            return Err("more than one node with the myself flag".into());
        }
        let me_node = nodes.remove(me);
        nodes.insert(0, me_node);
        let mut state = State {
            nodes,
            slots: vec![NONE; SLOTS],
            migrating,
            importing,
            current_epoch,
            last_vote_epoch,
            blacklist: BTreeMap::new(),
            ok: false,
            size: 0,
        };
        for (a, b, id) in owners {
            let index = state.find(&id);
            for s in a..=b {
                state.assign(s, index);
            }
        }
        // Open slots naming nodes nobody knows are dropped (Redis would create those nodes).
        let known: Vec<String> = state.nodes.iter().map(|n| n.id.clone()).collect();
        state.migrating.retain(|_, id| known.contains(id));
        state.importing.retain(|_, id| known.contains(id));
        Ok(state)
    }
}

/// A slot number in range, written as Redis writes integers (no sign, no leading zero).
pub fn parse_slot(s: &str) -> Option<u16> {
    let n = shards::util::parse_i64(s.as_bytes())?;
    (0..SLOTS as i64).contains(&n).then_some(n as u16)
}

/// `ip:port@cport[,hostname]` (or the old `ip:port`, whose bus port is port+10000).
fn parse_address(s: &str) -> Option<(String, u16, u16, String)> {
    let (addr, hostname) = match s.split_once(',') {
        Some((a, h)) => (a, h.to_string()),
        None => (s, String::new()),
    };
    let (hostport, cport) = match addr.split_once('@') {
        Some((hp, c)) => (hp, Some(c.parse::<u16>().ok()?)),
        None => (addr, None),
    };
    let colon = hostport.rfind(':')?;
    let ip = &hostport[..colon];
    let port: u16 = hostport[colon + 1..].parse().ok()?;
    let cport = cport.unwrap_or_else(|| port.wrapping_add(10000));
    Some((ip.to_string(), port, cport, hostname))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "d27f38ccad5081141f9eb64027905e2a3ca97452";
    const B: &str = "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca";

    #[test]
    fn config_round_trips() {
        let text = format!(
            "{A} 127.0.0.1:7000@17000 myself,master - 0 0 3 connected 0-100 200 [5->-{B}] [300-<-{B}]\n\
             {B} 127.0.0.1:7001@17001,host-b master - 0 1700000000000 2 connected 101-199\n\
             vars currentEpoch 5 lastVoteEpoch 4\n"
        );
        let st = State::from_config(&text).unwrap();
        assert_eq!(st.me().id, A);
        assert_eq!(st.current_epoch, 5);
        assert_eq!(st.last_vote_epoch, 4);
        assert!(st.mine(0) && st.mine(100) && st.mine(200));
        assert_eq!(st.owner(150).map(|n| n.id.as_str()), Some(B));
        assert_eq!(st.owner(201), None);
        assert_eq!(st.migrating.get(&5).map(|s| s.as_str()), Some(B));
        assert_eq!(st.importing.get(&300).map(|s| s.as_str()), Some(B));
        assert_eq!(st.node(B).unwrap().hostname, "host-b");
        // Written back, the other node's link reads as down (there is no bus yet).
        let again = State::from_config(&st.to_config()).unwrap();
        assert_eq!(again.to_config(), st.to_config());
        assert!(st.to_config().starts_with(&format!(
            "{A} 127.0.0.1:7000@17000 myself,master - 0 0 3 connected 0-100 200 [5->-{B}] [300-<-{B}]\n"
        )));
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(State::from_config("").is_err());
        assert!(State::from_config(&format!("{A} x myself,master - 0 0 0 connected\n")).is_err());
        assert!(
            State::from_config(&format!("{A} :1@2 myself,master - 0 0 0 connected 5-3\n")).is_err()
        );
        assert!(
            State::from_config(&format!("{A} :1@2 myself,master - 0 0 0 connected 16384\n"))
                .is_err()
        );
        assert!(State::from_config(&format!("{A} :1@2 myself,bogus - 0 0 0 connected\n")).is_err());
        assert!(State::from_config("vars currentEpoch x\n").is_err());
        assert_eq!(parse_slot("16383"), Some(16383));
        for bad in ["16384", "-1", "+5", "05", "-0", "", "1x"] {
            assert_eq!(parse_slot(bad), None, "{bad}");
        }
        // An old-style address without a bus port.
        let st = State::from_config(&format!("{A} 1.2.3.4:5 myself,master - 0 0 0 connected\n"))
            .unwrap();
        assert_eq!(st.me().cport, 10005);
    }

    #[test]
    fn state_follows_coverage_and_majority() {
        let mut st = State::new(A.into(), 7000, 17000);
        st.update(true);
        assert!(!st.ok);
        assert_eq!(st.size, 0);
        for s in 0..SLOTS as u16 {
            st.assign(s, Some(0));
        }
        st.update(true);
        assert!(st.ok);
        assert_eq!(st.size, 1);
        st.assign(7, None);
        st.update(true);
        assert!(!st.ok);
        st.update(false);
        assert!(st.ok);
        assert_eq!(st.ranges_of(0), vec![(0, 6), (8, 16383)]);
    }

    #[test]
    fn removing_a_node_frees_its_slots() {
        let mut st = State::new(A.into(), 7000, 17000);
        st.nodes
            .push(Node::new(B.into(), "1.1.1.1".into(), 1, 2, nflag::MASTER));
        st.nodes.push(Node::new(
            "f".repeat(40),
            "1.1.1.2".into(),
            1,
            2,
            nflag::MASTER,
        ));
        st.assign(1, Some(1));
        st.assign(2, Some(2));
        st.remove(1);
        assert_eq!(st.owner(1), None);
        assert_eq!(st.owner(2).map(|n| n.id.clone()), Some("f".repeat(40)));
    }

    #[test]
    fn bump_epoch_moves_only_when_needed() {
        let mut st = State::new(A.into(), 7000, 17000);
        assert!(st.bump_epoch());
        assert_eq!(st.me().config_epoch, 1);
        assert!(!st.bump_epoch());
    }
}
