//! The gentle close that ends every connection a probe opens, and the reads it shares with the
//! dialogues.
//!
//! Dropping a socket that still has unread data makes the kernel send RST, and a proxy in
//! front of the target may then keep a half-open backend session. So every attempt,
//! successful or not, ends the same way: shut down our side (FIN; with TLS, close_notify
//! first), read and discard until the peer closes too, then drop.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::socket;
use crate::outcome::{Close, Event, Failure, Trace};

/// How long the close waits for the peer's FIN after sending ours.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The most the close reads and discards while waiting for the peer's FIN.
const CLOSE_DRAIN_LIMIT: usize = 64 * 1024;

/// Whether a read error is a TLS peer closing TCP without close_notify. Many servers do, and
/// a probe treats it as an ordinary end of stream: bytes matched against a pattern or an HTTP
/// body that ends with the connection cannot be exploited by truncation, and HTTP framing
/// (Content-Length, chunks) still catches an answer cut short.
pub fn closed_without_close_notify(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::UnexpectedEof
}

/// A read where a TLS peer that closes without close_notify counts as closed (see
/// [`closed_without_close_notify`]).
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8]) -> io::Result<usize> {
    match stream.read(buf).await {
        Err(e) if closed_without_close_notify(&e) => Ok(0),
        other => other,
    }
}

/// A stream the gentle close can end.
pub trait Closable: AsyncRead + AsyncWrite + Unpin {
    /// For TLS, the TCP stream beneath, which the close may drain directly (see [`close`]).
    fn tls_over(&mut self) -> Option<&mut TcpStream>;

    /// An error of this stream as a failure. The TLS layer's streams classify their alerts and
    /// certificate errors (`tls::failure`); plain sockets by kind.
    fn failure(err: &io::Error, doing: &str) -> Failure {
        socket::failure(err, doing)
    }
}

impl Closable for TcpStream {
    fn tls_over(&mut self) -> Option<&mut TcpStream> {
        None
    }
}

/// Whether bytes start like a TLS record: content type change_cipher_spec to application_data,
/// then major version 3.
fn looks_like_a_record(head: &[u8]) -> bool {
    matches!(head, [0x14..=0x17] | [0x14..=0x17, 0x03, ..])
}

/// Sends FIN and waits (briefly, within the deadline) for the peer's, discarding what arrives,
/// so the socket is dropped with nothing unread and the kernel has no reason to send RST.
pub async fn close<S: Closable>(
    mut stream: S,
    deadline: Instant,
    trace: &mut Trace,
) -> Result<(), Failure> {
    let grace_end = deadline.min(Instant::now() + CLOSE_GRACE);
    // Bounded too: with TLS, shutdown first writes close_notify (and anything rustls still
    // buffers), which waits forever on a peer that stopped reading.
    match timeout_at(grace_end, stream.shutdown()).await {
        Err(_) => {
            trace.record(Event::Closed {
                how: Close::GraceOver,
                discarded: 0,
            });
            return Ok(());
        }
        Ok(Err(e)) => return Err(S::failure(&e, "closing")),
        Ok(Ok(())) => {}
    }
    let mut scratch = [0u8; 4096];
    let mut discarded = 0;
    let mut raw = false;
    let mut tls_closed = false;
    let how = loop {
        if discarded >= CLOSE_DRAIN_LIMIT {
            break Close::DrainLimit;
        }
        // Explicit, as in `expect`: a peer that keeps sending would starve the read's timer.
        if Instant::now() >= grace_end {
            break Close::GraceOver;
        }
        match timeout_at(grace_end, drain(&mut stream, &mut raw, &mut scratch)).await {
            Err(_) => break Close::GraceOver,
            // The server's close_notify ends TLS, not TCP: drain on to its FIN, so that nothing
            // it sends after close_notify meets a closed socket (and a reset).
            Ok(Ok(0)) if !raw && stream.tls_over().is_some() => {
                raw = true;
                tls_closed = true;
            }
            Ok(Ok(0)) => break Close::PeerClosed,
            Ok(Ok(n)) => discarded += n,
            // After the server's close_notify, a reset instead of its FIN still ends a session
            // that both sides closed.
            Ok(Err(_)) if tls_closed => break Close::PeerClosed,
            Ok(Err(e)) => return Err(S::failure(&e, "closing")),
        }
    };
    trace.record(Event::Closed { how, discarded });
    Ok(())
}

/// One read of the close's drain. Through TLS while what arrives starts like TLS records, so
/// that an alert the server sends after our close_notify (a refused client certificate, under
/// TLS 1.3) fails the run. From the first byte that is no record on, and after the server's
/// close_notify (`raw` then stays set), straight from the TCP stream: a peer may answer
/// close_notify with plaintext (Debian's exim did in our tests, to a client that left without
/// QUIT), which rustls would take for a broken record and answer with an alert after its own
/// close_notify, which its debug builds assert never happens. The check sees only where a read
/// starts, so a record and plaintext in one read still reach rustls: the run then fails with
/// the broken record (and a debug build trips that assertion).
async fn drain<S: Closable>(
    stream: &mut S,
    raw: &mut bool,
    scratch: &mut [u8],
) -> io::Result<usize> {
    if let Some(tcp) = stream.tls_over() {
        if !*raw {
            let mut head = [0u8; 2];
            let seen = tcp.peek(&mut head).await?;
            *raw = !looks_like_a_record(&head[..seen]);
        }
        if *raw {
            return tcp.read(scratch).await;
        }
    }
    read(stream, scratch).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_records_are_told_from_plaintext() {
        assert!(looks_like_a_record(&[0x15, 0x03]));
        assert!(looks_like_a_record(&[0x17]));
        assert!(!looks_like_a_record(b"42"));
        assert!(!looks_like_a_record(&[0x15, 0x34]));
        assert!(!looks_like_a_record(&[]));
    }
}
