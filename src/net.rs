//! The connection layer's system calls: epoll, non-blocking accept/read/write, and parking the
//! shard's event loop on the epoll fd through glommio.
//!
//! Parking: glommio 0.9 queues a POLL_ADD for a `TcpStream` built from a raw fd as soon as it is
//! created; the first read completes when the fd is readable and then fails (`ENOTSOCK` for an
//! epoll fd), which here means "ready". We wait on a `dup` of the epoll fd and drop it after each
//! wake-up, so glommio never closes the real one and no wait is ever cancelled. This relies on
//! glommio internals, hence the exact version pin and `tests/park.rs`-style coverage.

use futures_lite::AsyncReadExt;
use std::io;
use std::os::fd::{FromRawFd, RawFd};

pub const EV_READ: u32 = libc::EPOLLIN as u32;
pub const EV_WRITE: u32 = libc::EPOLLOUT as u32;

/// A shard's listening sockets: the plain port's and the TLS port's, either absent when that
/// port is not served.
#[derive(Clone, Copy)]
pub struct Listeners {
    pub plain: Option<RawFd>,
    pub tls: Option<RawFd>,
}

/// An epoll instance owned by one shard.
pub struct Epoll {
    pub fd: RawFd,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll { fd })
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: ev lives across the call; fds are ours.
        if unsafe { libc::epoll_ctl(self.fd, op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn add(&self, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, data)
    }

    pub fn modify(&self, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, data)
    }

    pub fn delete(&self, fd: RawFd) {
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
    }

    /// Ready events without waiting.
    pub fn poll(&self, events: &mut [libc::epoll_event]) -> usize {
        // SAFETY: the buffer is valid for events.len() entries.
        let n = unsafe { libc::epoll_wait(self.fd, events.as_mut_ptr(), events.len() as i32, 0) };
        n.max(0) as usize
    }

    /// Waits, through glommio, until the epoll fd is readable (some registered fd is ready).
    pub async fn park(&self) {
        // SAFETY: dup gives us a fresh fd that the TcpStream below owns and closes.
        let dup = unsafe { libc::fcntl(self.fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            // Out of fds: fall back to a short sleep so the loop goes on.
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            return;
        }
        // SAFETY: `dup` is a valid fd owned by nobody else.
        let mut waiter = unsafe { glommio::net::TcpStream::from_raw_fd(dup) };
        let mut b = [0u8; 1];
        // The read fails with ENOTSOCK once the epoll fd is readable: that is the wake-up.
        let _ = waiter.read(&mut b).await;
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

/// Accepts one connection, non-blocking and close-on-exec. `None` when none is pending.
pub fn accept(listener: RawFd) -> Option<io::Result<(RawFd, String)>> {
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: addr/len are valid out-parameters.
    let fd = unsafe {
        libc::accept4(
            listener,
            &mut addr as *mut _ as *mut libc::sockaddr,
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return None;
        }
        return Some(Err(e));
    }
    let peer = sockaddr_to_string(&addr);
    let one: libc::c_int = 1;
    // SAFETY: setting TCP_NODELAY on our own socket.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const _ as *const libc::c_void,
            4,
        );
    }
    Some(Ok((fd, peer)))
}

fn sockaddr_to_string(addr: &libc::sockaddr_storage) -> String {
    // SAFETY: socket2 reads the storage according to its family.
    let sa = unsafe {
        socket2::SockAddr::new(*addr, std::mem::size_of::<libc::sockaddr_storage>() as u32)
    };
    sa.as_socket()
        .map(|s| s.to_string())
        .unwrap_or_else(|| "?:0".into())
}

/// The local address of a socket, as `ip:port`.
pub fn local_addr(fd: RawFd) -> String {
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: valid out-parameters.
    if unsafe { libc::getsockname(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut len) } < 0 {
        return "?:0".into();
    }
    sockaddr_to_string(&addr)
}

/// Reads what is available into the spare capacity of `buf`. Ok(0) means the peer closed.
pub fn read_into(fd: RawFd, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let want = spare.len().min(max);
    // SAFETY: we read at most `want` bytes into the vector's spare capacity, then set the length.
    let n = unsafe { libc::read(fd, spare.as_mut_ptr() as *mut libc::c_void, want) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    unsafe { buf.set_len(buf.len() + n as usize) };
    Ok(n as usize)
}

/// Reads what is available into `buf`. Ok(0) means the peer closed.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid, writable slice.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Writes as much of `bufs` as the socket takes, in one call.
pub fn writev(fd: RawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    let count = bufs.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
    // SAFETY: IoSlice is ABI-compatible with iovec; count is within the slice.
    let n = unsafe { libc::writev(fd, bufs.as_ptr() as *const libc::iovec, count) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Writes as much of `data` as the socket takes.
pub fn write(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: data is a valid slice.
    let n = unsafe { libc::write(fd, data.as_ptr() as *const libc::c_void, data.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

pub fn close(fd: RawFd) {
    // SAFETY: closing a socket we own.
    unsafe { libc::close(fd) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::{LocalExecutorBuilder, Placement};
    use std::time::Duration;

    /// The connection layer depends on this: a pipe registered in the epoll set wakes a shard
    /// parked on the epoll fd through glommio (see the module docs).
    #[test]
    fn pipe_in_epoll_set_wakes_parked_loop() {
        let h = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(256 * 1024)
            .spawn(|| async {
                let ep = Epoll::new().expect("epoll");
                let mut fds = [0; 2];
                // SAFETY: pipe writes two fds into the array.
                assert_eq!(
                    unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) },
                    0
                );
                ep.add(fds[0], EV_READ, 7).expect("add");
                let writer = fds[1];
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    // SAFETY: writing one byte to our pipe.
                    unsafe { libc::write(writer, b"x".as_ptr() as *const libc::c_void, 1) };
                });
                let woke = futures_lite::future::or(
                    async {
                        ep.park().await;
                        true
                    },
                    async {
                        glommio::timer::sleep(Duration::from_secs(10)).await;
                        false
                    },
                )
                .await;
                assert!(woke, "parked loop was not woken by the pipe");
                let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 4];
                assert_eq!(ep.poll(&mut events), 1);
                let data = events[0].u64;
                assert_eq!(data, 7);
                // A second park must wait again (not spin) once the pipe is drained.
                let mut b = [0u8; 8];
                // SAFETY: reading from our pipe into a local buffer.
                unsafe { libc::read(fds[0], b.as_mut_ptr() as *mut libc::c_void, 8) };
                let early = futures_lite::future::or(
                    async {
                        ep.park().await;
                        true
                    },
                    async {
                        glommio::timer::sleep(Duration::from_millis(200)).await;
                        false
                    },
                )
                .await;
                assert!(!early, "park returned without any ready fd");
            })
            .expect("executor");
        h.join().expect("join");
    }
}
