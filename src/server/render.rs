//! Renderings, on blocking threads: `/metrics` streamed a piece at a time (gzip-compressed when
//! the client accepts it), and the status page whole.
//!
//! A scrape of 100,000 targets is about 200 MB of text. Streamed, it never exists whole: the
//! rendering writes a chunk, hands it over (compressed, the chunk is a few kilobytes), and
//! writes the next once the client has room for it. The store is only locked to take its
//! snapshot, so runs that finish meanwhile are recorded without waiting.

use std::fmt;
use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use hyper::header::{CONTENT_ENCODING, HeaderValue, VARY};
use hyper::{Response, StatusCode};
use tokio::runtime::Handle;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, SemaphorePermit, mpsc};
use tracing::warn;

use super::body::{PIECE, Payload, Piece};
use super::body::{answer, text};
use crate::metrics::{Format, Metrics};

/// Renderings run on blocking threads, at most this many at once: rendering many targets keeps
/// a core busy for a while, which on a runtime thread would hold up probes' timers and the
/// health check, and a flood of scrapes must queue for the cores rather than hold a rendering
/// each. A streamed rendering waiting for its client gives its permit back meanwhile, so a
/// client that stops reading holds up nobody else's scrape.
static RENDERS: Semaphore = Semaphore::const_new(2);

/// Pieces a streamed answer may have rendered ahead of its client.
const AHEAD: usize = 4;

/// Whether the `Accept-Encoding` headers (all of their lines) admit gzip: named (or `*`)
/// without `q=0`.
pub fn accepts_gzip<'a>(accept_encoding: impl IntoIterator<Item = &'a str>) -> bool {
    let mut gzip = None;
    let mut any = None;
    for coding in accept_encoding.into_iter().flat_map(|h| h.split(',')) {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match name.as_str() {
            "gzip" | "x-gzip" => gzip = Some(q > 0.0),
            "*" => any = Some(q > 0.0),
            _ => {}
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// `/metrics`, streamed from a blocking thread.
pub async fn metrics(metrics: Arc<Metrics>, format: Format, gzip: bool) -> Response<Payload> {
    let permit = RENDERS.acquire().await.expect("RENDERS is never closed");
    let (pieces, stream) = mpsc::channel(AHEAD);
    let runtime = Handle::current();
    // A rendering that fails, or whose client leaves, drops its end of the channel without
    // sending `End`: the body then ends with an error, never as a complete answer.
    tokio::task::spawn_blocking(move || {
        let mut out = Out {
            pieces,
            permit: Some(permit),
            runtime,
        };
        let rendered = if gzip {
            stream_gzip(&metrics, format, &mut out)
        } else {
            let mut sink = |chunk: &mut String| {
                let full = std::mem::replace(chunk, String::with_capacity(chunk.capacity()));
                out.send(Bytes::from(full.into_bytes()))
            };
            metrics.write(format, &mut sink)
        };
        match rendered {
            Ok(()) => out.end(),
            Err(fmt::Error) if out.pieces.is_closed() => {}
            Err(fmt::Error) => warn!("rendering /metrics failed"),
        }
    });
    let mut response = answer(
        StatusCode::OK,
        format.content_type(),
        Payload::Stream(stream),
    );
    let headers = response.headers_mut();
    headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// The scrape through gzip at its fastest level: the text is so repetitive that the fastest
/// level already shrinks it about twentyfold, and a slower one would hold a core far longer.
fn stream_gzip(metrics: &Metrics, format: Format, out: &mut Out) -> fmt::Result {
    let mut gzip = GzEncoder::new(Vec::with_capacity(2 * PIECE), Compression::fast());
    let mut sink = |chunk: &mut String| {
        gzip.write_all(chunk.as_bytes()).map_err(|_| fmt::Error)?;
        chunk.clear();
        if gzip.get_ref().len() >= PIECE {
            let full = std::mem::replace(gzip.get_mut(), Vec::with_capacity(2 * PIECE));
            out.send(Bytes::from(full))?;
        }
        Ok(())
    };
    metrics.write(format, &mut sink)?;
    let rest = gzip.finish().map_err(|_| fmt::Error)?;
    out.send(Bytes::from(rest))
}

/// The rendering's end of a streamed answer.
struct Out {
    pieces: mpsc::Sender<Piece>,
    /// Held while rendering, given back while waiting for the client.
    permit: Option<SemaphorePermit<'static>>,
    runtime: Handle,
}

impl Out {
    /// Hands a piece over, waiting (without a permit) while the client has not taken the
    /// earlier ones. An error: the client has gone.
    fn send(&mut self, piece: Bytes) -> fmt::Result {
        if piece.is_empty() {
            return Ok(());
        }
        match self.pieces.try_send(Piece::Data(piece)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(_)) => Err(fmt::Error),
            Err(TrySendError::Full(piece)) => {
                self.permit = None;
                self.pieces.blocking_send(piece).map_err(|_| fmt::Error)?;
                let permit = self.runtime.block_on(RENDERS.acquire());
                self.permit = Some(permit.expect("RENDERS is never closed"));
                Ok(())
            }
        }
    }

    fn end(mut self) {
        // The rendering is done: waiting for the client to take the end needs no turn.
        self.permit = None;
        // The client may have gone after the last piece; nobody is left to tell.
        let _ = self.pieces.blocking_send(Piece::End);
    }
}

/// Answers with what `render` makes, rendered whole on a blocking thread once one of the
/// [`RENDERS`] is free.
pub async fn whole(
    content_type: &'static str,
    render: impl FnOnce() -> String + Send + 'static,
) -> Response<Payload> {
    // A request pushed out while it waits here renders nothing; once started, a rendering
    // finishes, holding its permit, so the bound holds whatever happens to its request.
    let permit = RENDERS.acquire().await.expect("RENDERS is never closed");
    let rendering = tokio::task::spawn_blocking(move || {
        let mut body = render();
        // Held until its client reads it: not with the spare room a growing String has.
        body.shrink_to_fit();
        drop(permit);
        body
    });
    match rendering.await {
        Ok(body) => answer(StatusCode::OK, content_type, Payload::Whole(body.into())),
        Err(e) => {
            warn!(error = %e, "rendering a response failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering failed; see the log\n",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_used_when_the_client_accepts_it() {
        // What Prometheus sends.
        assert!(accepts_gzip(["gzip"]));
        assert!(accepts_gzip(["deflate, gzip;q=1.0, *;q=0.5"]));
        assert!(accepts_gzip(["*"]));
        assert!(accepts_gzip(["br, X-GZIP"]));
        assert!(accepts_gzip(["br", "gzip"]), "on a second line");
        assert!(!accepts_gzip([]));
        assert!(!accepts_gzip(["identity"]));
        assert!(!accepts_gzip(["gzip;q=0"]));
        assert!(!accepts_gzip(["gzip;Q=0"]));
        assert!(!accepts_gzip(["gzip;q=0, *"]));
        assert!(!accepts_gzip(["*;q=0"]));
        assert!(!accepts_gzip([""]));
    }

    /// A rendering whose client has not taken its last pieces waits for it without a turn:
    /// a client that stops reading at the very end must not hold up other scrapes.
    #[test]
    fn the_end_of_a_rendering_waits_for_its_client_without_a_turn() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let permit = runtime.block_on(RENDERS.acquire()).unwrap();
        let (pieces, mut stream) = mpsc::channel(AHEAD);
        for _ in 0..AHEAD {
            pieces
                .try_send(Piece::Data(Bytes::from_static(b"x")))
                .unwrap();
        }
        let out = Out {
            pieces,
            permit: Some(permit),
            runtime: runtime.handle().clone(),
        };
        assert_eq!(RENDERS.available_permits(), 1);
        let ending = std::thread::spawn(move || out.end());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while RENDERS.available_permits() != 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the turn is still held"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!ending.is_finished(), "it waits for the client");
        for _ in 0..AHEAD {
            assert!(matches!(stream.blocking_recv(), Some(Piece::Data(_))));
        }
        assert!(matches!(stream.blocking_recv(), Some(Piece::End)));
        ending.join().unwrap();
    }
}
