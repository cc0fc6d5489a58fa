//! Timed connects, and the mapping of socket errors to failure reasons by kind.
//!
//! Probes see the network only through `net`, so every probe type classifies a refused, reset
//! or unreachable peer the same way.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout_at};

use crate::outcome::{Failure, Reason, ReasonSet};

/// Every reason resolving a host and connecting to it can end with, the deadline's included.
pub const CONNECT_REASONS: ReasonSet = ReasonSet::of(&[
    Reason::DnsError,
    Reason::ConnectionRefused,
    Reason::ConnectionTimeout,
    Reason::ConnectionReset,
    Reason::NetworkUnreachable,
    Reason::HostUnreachable,
    Reason::Timeout,
    Reason::PermissionDenied,
    Reason::IoError,
]);

/// A socket error as a failure: classified by kind, with `doing` saying what the probe was
/// doing. Errors that can carry a TLS alert or certificate problem go through `tls::failure`.
pub fn failure(err: &io::Error, doing: &str) -> Failure {
    Failure::new(classify(err), format!("{doing}: {err}"))
}

/// Connects to `addr`, timing SYN to established.
pub async fn connect(
    addr: SocketAddr,
    deadline: Instant,
) -> Result<(TcpStream, Duration), Failure> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| failure(&e, "creating a socket"))?;
    let start = Instant::now();
    match timeout_at(deadline, socket.connect(addr)).await {
        Err(_) => Err(Failure::new(
            Reason::ConnectionTimeout,
            format!("{addr} did not accept the connection before the deadline"),
        )),
        Ok(Err(e)) => Err(failure(&e, &format!("connecting to {addr}"))),
        Ok(Ok(stream)) => {
            let connected = start.elapsed();
            // Each write leaves at once: Nagle would hold a request's last segment (an HTTP/2
            // HEADERS frame after the preface, a dialogue step) for the peer's delayed ACK and
            // add those 40 ms to the time measured.
            stream
                .set_nodelay(true)
                .map_err(|e| failure(&e, "setting TCP_NODELAY"))?;
            Ok((stream, connected))
        }
    }
}

/// Maps a socket error to its stable reason by kind, never by message text.
pub fn classify(err: &io::Error) -> Reason {
    use io::ErrorKind::*;
    match err.kind() {
        ConnectionRefused => Reason::ConnectionRefused,
        // After a reset the kernel reports it as whichever of these the next call runs into.
        ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected => Reason::ConnectionReset,
        // The kernel gave up retransmitting (SYN or data) before our own deadline did.
        TimedOut => Reason::ConnectionTimeout,
        NetworkUnreachable | NetworkDown => Reason::NetworkUnreachable,
        HostUnreachable => Reason::HostUnreachable,
        PermissionDenied => Reason::PermissionDenied,
        _ => Reason::IoError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_errno_values_the_kernel_returns() {
        let reason = |errno| classify(&io::Error::from_raw_os_error(errno));
        assert_eq!(reason(111), Reason::ConnectionRefused); // ECONNREFUSED
        assert_eq!(reason(104), Reason::ConnectionReset); // ECONNRESET
        assert_eq!(reason(32), Reason::ConnectionReset); // EPIPE
        assert_eq!(reason(107), Reason::ConnectionReset); // ENOTCONN
        assert_eq!(reason(110), Reason::ConnectionTimeout); // ETIMEDOUT
        assert_eq!(reason(101), Reason::NetworkUnreachable); // ENETUNREACH
        assert_eq!(reason(113), Reason::HostUnreachable); // EHOSTUNREACH
        assert_eq!(reason(13), Reason::PermissionDenied); // EACCES
        assert_eq!(reason(1), Reason::PermissionDenied); // EPERM
        assert_eq!(reason(24), Reason::IoError); // EMFILE
    }
}
