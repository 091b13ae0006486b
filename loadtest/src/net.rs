//! Socket plumbing: non-blocking connects bound to rotating loopback source addresses
//! (`--source-ips`), abrupt close for churn, and the RLIMIT_NOFILE check.

use crate::error::LoadError;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Parses `127.0.0.1-127.0.0.8` or `127.0.0.1,127.0.0.2` or a single address.
pub fn parse_source_ips(spec: &str) -> Result<Vec<IpAddr>, LoadError> {
    let bad = || LoadError::BadArg(format!("--source-ips {spec:?}: expected A.B.C.D[-A.B.C.E] or a comma list"));
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
            let b: Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 65_535 {
                return Err(bad());
            }
            out.extend((a..=b).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
        } else {
            out.push(part.parse().map_err(|_| bad())?);
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Starts a non-blocking TCP connect to `dst`, optionally from `src` (port chosen by the kernel).
pub fn start_connect(dst: SocketAddr, src: Option<IpAddr>) -> io::Result<mio::net::TcpStream> {
    let sock = Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    if let Some(ip) = src {
        // Lets the kernel pick the port lazily at connect time per (src, dst) 4-tuple.
        set_bind_no_port(&sock);
        sock.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    }
    match sock.connect(&SockAddr::from(dst)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    let std_stream: std::net::TcpStream = sock.into();
    Ok(mio::net::TcpStream::from_std(std_stream))
}

/// IP_BIND_ADDRESS_NO_PORT: defer the port choice to connect() so each source address can
/// reuse ports towards different destinations.
fn set_bind_no_port(sock: &Socket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: valid socket fd and a pointer to a c_int of the stated size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// An unconnected TCP socket that takes the place of a dropped connection's stream until it
/// reconnects, so the old socket can be closed (and reset) now.
pub fn placeholder_stream() -> io::Result<mio::net::TcpStream> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    Ok(mio::net::TcpStream::from_std(sock.into()))
}

/// Makes the next close send a RST instead of a FIN (abrupt client drop).
pub fn set_abortive_close(stream: &mio::net::TcpStream) {
    let sock = socket2::SockRef::from(stream);
    let _ = sock.set_linger(Some(Duration::ZERO));
}

/// Classifies a socket error into a short stable kind for reports.
pub fn io_kind(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "connect_refused",
        Some(libc::ECONNRESET) => "connection_reset",
        Some(libc::ETIMEDOUT) => "timeout",
        Some(libc::EADDRNOTAVAIL) => "no_free_port",
        Some(libc::EADDRINUSE) => "address_in_use",
        Some(libc::EMFILE) | Some(libc::ENFILE) => "too_many_open_files",
        Some(libc::EPIPE) => "broken_pipe",
        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => "unreachable",
        _ => match e.kind() {
            io::ErrorKind::UnexpectedEof => "eof",
            _ => "io_other",
        },
    }
}

/// Current soft RLIMIT_NOFILE.
pub fn fd_limit() -> u64 {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    if rc == 0 { rl.rlim_cur } else { u64::MAX }
}

/// Fails clearly if `conns` sockets (plus poll/timer/stdio overhead) exceed the fd limit.
pub fn check_fd_limit(conns: usize, threads: usize) -> Result<(), LoadError> {
    let needed = conns as u64 + 4 * threads as u64 + 32;
    let limit = fd_limit();
    if needed > limit {
        return Err(LoadError::FdLimit { needed: conns, needed_fds: needed, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ip_ranges_expand() {
        let v = parse_source_ips("127.0.0.1-127.0.0.3").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[2], "127.0.0.3".parse::<IpAddr>().unwrap());
        assert_eq!(parse_source_ips("127.0.0.1,127.0.0.9").unwrap().len(), 2);
        assert!(parse_source_ips("127.0.0.5-127.0.0.1").is_err());
        assert!(parse_source_ips("nope").is_err());
    }

    #[test]
    fn fd_limit_check_rejects_absurd_counts() {
        assert!(check_fd_limit(1, 1).is_ok());
        assert!(matches!(check_fd_limit(usize::MAX / 2, 1), Err(LoadError::FdLimit { .. })));
    }
}
