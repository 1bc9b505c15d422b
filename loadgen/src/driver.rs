//! The event loop of one thread: it drives its share of the clients over non-blocking
//! sockets, waiting on all of them with poll(2). A client sends a pipeline of `-P` requests,
//! waits for every reply, records each one's latency (from the pipeline's write to its reply,
//! as redis-benchmark does), then sends the next.
//!
//! In cluster mode a client holds one connection per node it has talked to and sends each
//! request to the node owning its key's slot; `-MOVED` updates the thread's slot map (then the
//! whole map is read again) and resends the request, `-ASK` resends it after ASKING, both at
//! most `REDIRECTS_MAX` times; `-TRYAGAIN` sends it again a little later. A client whose connection fails stops; the failure is reported.

use crate::cluster::SlotMap;
use crate::keys::key_slot;
use crate::report::Stats;
use crate::resp::{self, Reply};
use crate::workload::{Expect, Generator, Request, Settings};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a request may be redirected before its reply counts as an error.
const REDIRECTS_MAX: u8 = 5;
/// How often a request that got `-TRYAGAIN` (a multi-key command in a slot being migrated,
/// its keys split between the nodes) is sent again, and how long after.
const TRYAGAIN_MAX: u8 = 100;
const TRYAGAIN_DELAY: Duration = Duration::from_millis(10);
/// How long a pipeline may wait for its replies before its client gives up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one poll(2) waits, so deadlines are noticed without traffic; shorter while a
/// `-TRYAGAIN` retry is due.
const POLL_TIMEOUT_MS: i32 = 100;
const POLL_TIMEOUT_RETRY_MS: i32 = 2;
/// How much one read takes from a socket.
const READ_CHUNK: usize = 64 * 1024;

/// What every thread shares: settings and the run's clock.
pub struct Plan {
    pub settings: Settings,
    pub pipeline: usize,
    /// Measured requests each client sends (`-n`), when the run is not timed.
    pub quota: Option<Vec<u64>>,
    /// When a timed run (`--duration`) stops issuing.
    pub deadline: Option<Instant>,
    /// Requests whose pipeline starts before this are not measured.
    pub warmup_end: Instant,
    pub cluster: bool,
    /// The address CLUSTER SLOTS is read from again after a `-MOVED`.
    pub seed: String,
    pub map: SlotMap,
}

/// Counters the progress line reads while the run goes on.
#[derive(Default)]
pub struct Progress {
    pub replies: AtomicU64,
    pub errors: AtomicU64,
}

/// What a connection's next reply answers.
enum Pending {
    /// An ASKING sent before a redirected request.
    Asking,
    /// The request at this index of the client's pipeline.
    Request(usize),
}

struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    written: usize,
    input: Vec<u8>,
    pending: VecDeque<Pending>,
}

struct InFlight {
    request: Request,
    redirects: u8,
    retries: u8,
}

struct Client {
    id: usize,
    generator: Generator,
    /// One connection per node index of the thread's slot map, opened on first use.
    conns: Vec<Option<Conn>>,
    pipeline: Vec<InFlight>,
    outstanding: usize,
    /// Requests of the pipeline to send again (after `-TRYAGAIN`) at the given time.
    delayed: Vec<(Instant, usize)>,
    started: Instant,
    measured: bool,
    /// Measured requests sent so far.
    issued: u64,
    finished: bool,
}

/// A request to send again elsewhere.
struct Redirect {
    request: usize,
    node: String,
    asking: bool,
}

/// A cluster error reply that asks for the request to be sent again.
#[derive(Debug, PartialEq)]
enum Redirection {
    /// `-MOVED <slot> <node>`: the slot lives there now.
    Moved(u16, String),
    /// `-ASK <slot> <node>`: this once, ask there (after ASKING).
    Ask(String),
    /// `-TRYAGAIN`: the keys are split by a migration; try again shortly.
    TryAgain,
}

/// Runs `clients` (id and generator) to the end of the plan and returns what they measured.
pub fn run(plan: &Plan, clients: Vec<(usize, Generator)>, progress: &Progress) -> Stats {
    let names: Vec<String> = plan.settings.mix.0.iter().map(|(c, _)| c.name()).collect();
    let mut stats = Stats::new(&names);
    let mut map = plan.map.clone();
    let mut clients: Vec<Client> = clients
        .into_iter()
        .map(|(id, generator)| Client {
            id,
            generator,
            conns: Vec::new(),
            pipeline: Vec::new(),
            outstanding: 0,
            delayed: Vec::new(),
            started: Instant::now(),
            measured: false,
            issued: 0,
            finished: false,
        })
        .collect();
    loop {
        let now = Instant::now();
        let mut active = false;
        for c in &mut clients {
            if let Err(e) = step(plan, &map, c, now) {
                fail(c, &mut stats, e);
            }
            active |= !c.finished || c.outstanding > 0;
        }
        if !active {
            return stats;
        }
        if let Err(e) = wait(plan, &mut map, &mut clients, &mut stats, progress) {
            stats.connection_errors.push(e);
            return stats;
        }
    }
}

/// Starts the client's next pipeline when the last one is complete, or notices it is done.
fn step(plan: &Plan, map: &SlotMap, c: &mut Client, now: Instant) -> Result<(), String> {
    if c.finished {
        return Ok(());
    }
    if c.outstanding > 0 {
        if now.duration_since(c.started) > REPLY_TIMEOUT {
            return Err(format!(
                "client {}: no reply within {REPLY_TIMEOUT:?}",
                c.id
            ));
        }
        return resend_due(map, c, now);
    }
    let measured = now >= plan.warmup_end;
    let mut size = plan.pipeline as u64;
    if measured {
        if plan.deadline.is_some_and(|d| now >= d) {
            c.finished = true;
            return Ok(());
        }
        if let Some(quota) = &plan.quota {
            size = size.min(quota[c.id] - c.issued);
            if size == 0 {
                c.finished = true;
                return Ok(());
            }
        }
        c.issued += size;
    }
    c.measured = measured;
    c.started = now;
    c.pipeline.clear();
    for i in 0..size as usize {
        let request = c.generator.next(&plan.settings);
        let node = map.node_of(key_slot(&request.route_key));
        let conn = conn(map, c, node)?;
        conn.out.extend_from_slice(&request.bytes);
        conn.pending.push_back(Pending::Request(i));
        c.pipeline.push(InFlight {
            request,
            redirects: 0,
            retries: 0,
        });
    }
    c.outstanding = c.pipeline.len();
    for conn in c.conns.iter_mut().flatten() {
        flush(conn)?;
    }
    Ok(())
}

/// Sends again the client's `-TRYAGAIN` requests whose time has come, routed by the map.
fn resend_due(map: &SlotMap, c: &mut Client, now: Instant) -> Result<(), String> {
    if c.delayed.iter().all(|&(at, _)| at > now) {
        return Ok(());
    }
    let due: Vec<usize> = c
        .delayed
        .iter()
        .filter(|&&(at, _)| at <= now)
        .map(|&(_, i)| i)
        .collect();
    c.delayed.retain(|&(at, _)| at > now);
    for i in due {
        let bytes = c.pipeline[i].request.bytes.clone();
        let node = map.node_of(key_slot(&c.pipeline[i].request.route_key));
        let conn = conn(map, c, node)?;
        conn.out.extend_from_slice(&bytes);
        conn.pending.push_back(Pending::Request(i));
        flush(conn)?;
    }
    Ok(())
}

/// The client's connection to node `node`, opened when it has none.
fn conn<'a>(map: &SlotMap, c: &'a mut Client, node: usize) -> Result<&'a mut Conn, String> {
    if c.conns.len() <= node {
        c.conns.resize_with(node + 1, || None);
    }
    if c.conns[node].is_none() {
        let addr = &map.nodes[node];
        let fail = |e: std::io::Error| format!("client {} to {addr}: {e}", c.id);
        let stream = TcpStream::connect(addr).map_err(fail)?;
        stream.set_nodelay(true).map_err(fail)?;
        stream.set_nonblocking(true).map_err(fail)?;
        c.conns[node] = Some(Conn {
            stream,
            out: Vec::new(),
            written: 0,
            input: Vec::new(),
            pending: VecDeque::new(),
        });
    }
    Ok(c.conns[node].as_mut().expect("opened above"))
}

/// Writes what the socket takes of the connection's output.
fn flush(conn: &mut Conn) -> Result<(), String> {
    while conn.written < conn.out.len() {
        match conn.stream.write(&conn.out[conn.written..]) {
            Ok(0) => return Err("connection closed while writing".into()),
            Ok(n) => conn.written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    conn.out.clear();
    conn.written = 0;
    Ok(())
}

/// Ends a client after a connection failure.
fn fail(c: &mut Client, stats: &mut Stats, error: String) {
    stats.connection_errors.push(error);
    c.finished = true;
    c.outstanding = 0;
    c.delayed.clear();
    c.conns.clear();
}

/// Waits until some connection is readable (or writable with output left), then handles it.
fn wait(
    plan: &Plan,
    map: &mut SlotMap,
    clients: &mut [Client],
    stats: &mut Stats,
    progress: &Progress,
) -> Result<(), String> {
    let mut fds = Vec::new();
    let mut owners = Vec::new();
    let mut timeout_ms = POLL_TIMEOUT_MS;
    for (ci, c) in clients.iter().enumerate() {
        if !c.delayed.is_empty() {
            timeout_ms = POLL_TIMEOUT_RETRY_MS;
        }
        for (ni, conn) in c.conns.iter().enumerate() {
            let Some(conn) = conn else { continue };
            let mut events = 0;
            if !conn.pending.is_empty() {
                events |= libc::POLLIN;
            }
            if conn.written < conn.out.len() {
                events |= libc::POLLOUT;
            }
            if events != 0 {
                fds.push(libc::pollfd {
                    fd: conn.stream.as_raw_fd(),
                    events,
                    revents: 0,
                });
                owners.push((ci, ni));
            }
        }
    }
    if fds.is_empty() {
        // Only retries are waiting.
        std::thread::sleep(Duration::from_millis(1));
        return Ok(());
    }
    // SAFETY: `fds` is a live, correctly sized array of pollfd for the duration of the call.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if ready < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == ErrorKind::Interrupted {
            return Ok(());
        }
        return Err(format!("poll: {e}"));
    }
    let mut refresh = false;
    for (fd, &(ci, ni)) in fds.iter().zip(&owners) {
        if fd.revents == 0 {
            continue;
        }
        let c = &mut clients[ci];
        if c.finished && c.outstanding == 0 {
            continue;
        }
        if let Err(e) = service(plan, map, c, ni, stats, progress, &mut refresh) {
            fail(c, stats, format!("client {}: {e}", c.id));
        }
    }
    if refresh {
        // A slot moved: read the whole map again (other slots may have moved with it), keeping
        // node indices stable since connections are indexed by them.
        match SlotMap::fetch(&plan.seed) {
            Ok(fresh) => map.merge(&fresh),
            Err(e) => eprintln!("warning: refreshing the slot map: {e}"),
        }
    }
    Ok(())
}

/// Flushes and reads connection `ni` of client `c` and handles the replies that came in.
fn service(
    plan: &Plan,
    map: &mut SlotMap,
    c: &mut Client,
    ni: usize,
    stats: &mut Stats,
    progress: &Progress,
    refresh: &mut bool,
) -> Result<(), String> {
    let Some(link) = c.conns.get_mut(ni).and_then(Option::as_mut) else {
        return Ok(());
    };
    flush(link)?;
    read_available(link)?;
    let now = Instant::now();
    let mut pos = 0;
    let mut redirects = Vec::new();
    let mut answered = Vec::new();
    while let Some((reply, used)) = resp::parse(&link.input[pos..]).map_err(|e| e.0)? {
        pos += used;
        match link.pending.pop_front() {
            None => return Err(format!("unexpected reply {reply}")),
            Some(Pending::Asking) => {
                if let Some(e) = reply.error() {
                    stats.problem(format!("ASKING: {}", String::from_utf8_lossy(e)));
                }
            }
            Some(Pending::Request(i)) => {
                let flight = &mut c.pipeline[i];
                match redirection(plan.cluster, &reply) {
                    Some(Redirection::TryAgain) if flight.retries < TRYAGAIN_MAX => {
                        flight.retries += 1;
                        stats.tryagain += 1;
                        c.delayed.push((now + TRYAGAIN_DELAY, i));
                    }
                    Some(Redirection::Moved(slot, node)) if flight.redirects < REDIRECTS_MAX => {
                        flight.redirects += 1;
                        stats.moved += 1;
                        map.set(slot, &node);
                        *refresh = true;
                        redirects.push(Redirect {
                            request: i,
                            node,
                            asking: false,
                        });
                    }
                    Some(Redirection::Ask(node)) if flight.redirects < REDIRECTS_MAX => {
                        flight.redirects += 1;
                        stats.ask += 1;
                        redirects.push(Redirect {
                            request: i,
                            node,
                            asking: true,
                        });
                    }
                    _ => answered.push((i, reply)),
                }
            }
        }
    }
    link.input.drain(..pos);
    for (i, reply) in answered {
        complete(c, i, &reply, now, stats, progress);
    }
    redirects
        .into_iter()
        .try_for_each(|r| send_redirected(map, c, r))
}

/// Sends a redirected request to its new node (after ASKING for `-ASK`).
fn send_redirected(map: &mut SlotMap, c: &mut Client, r: Redirect) -> Result<(), String> {
    let node = map.node_index(&r.node);
    // Redirections are rare: copying the request keeps the borrows simple.
    let bytes = c.pipeline[r.request].request.bytes.clone();
    let conn = conn(map, c, node)?;
    if r.asking {
        resp::encode(&["ASKING"], &mut conn.out);
        conn.pending.push_back(Pending::Asking);
    }
    conn.out.extend_from_slice(&bytes);
    conn.pending.push_back(Pending::Request(r.request));
    flush(conn)
}

/// Appends everything the socket has to the connection's input.
fn read_available(link: &mut Conn) -> Result<(), String> {
    thread_local! {
        // One read buffer per thread, not one allocation per readiness event.
        static CHUNK: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
    }
    CHUNK.with_borrow_mut(|chunk| loop {
        match link.stream.read(chunk) {
            Ok(0) => return Err("connection closed by the server".into()),
            Ok(n) => link.input.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    })
}

/// `-MOVED <slot> <host:port>`, `-ASK <slot> <host:port>` or `-TRYAGAIN …`, in cluster mode.
fn redirection(cluster: bool, reply: &Reply) -> Option<Redirection> {
    if !cluster {
        return None;
    }
    let text = std::str::from_utf8(reply.error()?).ok()?;
    let mut words = text.split(' ');
    let asking = match words.next()? {
        "MOVED" => false,
        "ASK" => true,
        "TRYAGAIN" => return Some(Redirection::TryAgain),
        _ => return None,
    };
    let slot = words.next()?.parse().ok()?;
    let node = words.next()?;
    // Redis 7 may leave the host out (`:6380`) when the node has no announced address.
    let node = if node.starts_with(':') {
        format!("127.0.0.1{node}")
    } else {
        node.to_string()
    };
    Some(if asking {
        Redirection::Ask(node)
    } else {
        Redirection::Moved(slot, node)
    })
}

/// Records the final reply to request `i` of the client's pipeline: its latency when the
/// pipeline is measured, and any error or mismatch always (the warm-up is checked too).
fn complete(
    c: &mut Client,
    i: usize,
    reply: &Reply,
    now: Instant,
    stats: &mut Stats,
    progress: &Progress,
) {
    let request = &c.pipeline[i].request;
    let command = &mut stats.commands[request.command];
    c.outstanding -= 1;
    progress.replies.fetch_add(1, Ordering::Relaxed);
    if c.measured {
        command.record(now.duration_since(c.started));
    }
    let problem = if let Some(e) = reply.error() {
        command.errors += 1;
        progress.errors.fetch_add(1, Ordering::Relaxed);
        format!("error reply -{}", String::from_utf8_lossy(e))
    } else if !request.expect.matches(reply) {
        command.mismatches += 1;
        progress.errors.fetch_add(1, Ordering::Relaxed);
        format!("got {reply}, expected {}", describe(&request.expect))
    } else {
        return;
    };
    let cmd = String::from_utf8_lossy(&request.bytes).replace("\r\n", " ");
    let cmd: String = cmd.chars().take(120).collect();
    stats.problem(format!("client {}: {cmd}: {problem}", c.id));
}

fn describe(expect: &Expect) -> String {
    match expect {
        Expect::Bulk(Some(v)) => format!("{:?}", String::from_utf8_lossy(v)),
        Expect::Bulk(None) => "(nil)".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> Reply {
        Reply::Error(text.as_bytes().to_vec())
    }

    #[test]
    fn redirections_are_read_in_cluster_mode_only() {
        let moved = err("MOVED 3999 127.0.0.1:6381");
        assert_eq!(
            redirection(true, &moved),
            Some(Redirection::Moved(3999, "127.0.0.1:6381".into()))
        );
        assert_eq!(redirection(false, &moved), None);
        assert_eq!(
            redirection(true, &err("ASK 12 :7001")),
            Some(Redirection::Ask("127.0.0.1:7001".into()))
        );
        assert_eq!(
            redirection(
                true,
                &err("TRYAGAIN Multiple keys request during rehashing of slot")
            ),
            Some(Redirection::TryAgain)
        );
        assert_eq!(redirection(true, &err("MOVED x 1:2")), None);
        assert_eq!(redirection(true, &err("ERR MOVED")), None);
        assert_eq!(redirection(true, &Reply::Int(1)), None);
    }
}
