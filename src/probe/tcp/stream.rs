//! The TLS handshake with its verdict, and sending: what the tcp probe, its STARTTLS dialogues
//! and the http probe share over a connected stream.

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::client::TlsStream;

use crate::net::close::close;
use crate::outcome::{Failure, Reason, Trace};
use crate::tls::{Handshake, TlsFacts, TlsTarget};

/// The TLS handshake, and the verdict on what it revealed: a stream comes back only when the
/// run may use it. Otherwise the connection is closed gently, and nothing was sent over it.
pub async fn secure(
    tls: &TlsTarget,
    stream: TcpStream,
    deadline: Instant,
    trace: &mut Trace,
    seen: &mut Option<TlsFacts>,
) -> Result<Box<TlsStream<TcpStream>>, Failure> {
    let (stream, verdict) = handshake(tls, stream, deadline, trace, seen).await?;
    if let Err(failure) = verdict {
        let _ = close(stream, deadline, trace).await;
        return Err(failure);
    }
    Ok(stream)
}

/// The TLS handshake and the verdict on the chain it revealed. A handshake that failed has
/// closed the connection; a verdict against the chain comes back with the stream, which the
/// caller must close without sending anything that matters over it.
pub async fn handshake(
    tls: &TlsTarget,
    stream: TcpStream,
    deadline: Instant,
    trace: &mut Trace,
    seen: &mut Option<TlsFacts>,
) -> Result<(Box<TlsStream<TcpStream>>, Result<(), Failure>), Failure> {
    match tls.handshake(stream, deadline, trace, seen).await {
        Handshake::Done(stream) => {
            let verdict = seen.as_ref().map_or(Ok(()), |facts| tls.verdict(facts));
            Ok((stream, verdict))
        }
        Handshake::Failed { failure, stream } => {
            if let Some(stream) = stream {
                // The handshake's failure is the story, whatever the close meets.
                let _ = close(stream, deadline, trace).await;
            }
            Err(failure)
        }
    }
}

/// Writes all of `bytes` before the deadline.
pub async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    deadline: Instant,
) -> Result<(), Failure> {
    match timeout_at(deadline, stream.write_all(bytes)).await {
        Err(_) => Err(Failure::new(
            Reason::Timeout,
            "the peer did not take our data before the deadline",
        )),
        Ok(Err(e)) => Err(crate::tls::failure(&e, "sending")),
        Ok(Ok(())) => Ok(()),
    }
}
