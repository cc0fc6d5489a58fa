//! A scripted peer for the fuzz targets: it sends what a fuzz input says, in the pieces and at
//! the pace the input says, and takes whatever it is sent. Networks deliver bytes in any split
//! and with pauses between them, and the readers' incremental searches and timers are where
//! that matters, so the input decides both.
//!
//! Its runtime's clock is paused: a pause or a deadline passes in no real time, and a reader
//! that waits with no timer set hangs for good, which the fuzzer reports as a timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::time::Sleep;

use crate::net::close::Closable;

/// What the peer sends, from a fuzz input: a byte for the size of each piece (0: as much as is
/// read at once), a byte for the pause before each piece after the first (in tens of
/// milliseconds: 0 for none, up to 2.55 s), then the bytes. After them it closes, or with the
/// size byte's top bit set, falls silent and never closes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Script<'a> {
    pub(crate) piece: usize,
    pub(crate) pause: Duration,
    pub(crate) silent_after: bool,
    pub(crate) bytes: &'a [u8],
}

impl<'a> Script<'a> {
    pub(crate) fn parse(data: &'a [u8]) -> Script<'a> {
        match data {
            [size, pause, bytes @ ..] => Script {
                piece: usize::from(size & 0x7f),
                pause: Duration::from_millis(u64::from(*pause) * 10),
                silent_after: size & 0x80 != 0,
                bytes,
            },
            _ => Script {
                piece: 0,
                pause: Duration::ZERO,
                silent_after: false,
                bytes: data,
            },
        }
    }
}

pub(crate) struct Peer<'a> {
    script: Script<'a>,
    /// How much of the script has been read.
    pub(crate) sent: usize,
    /// Everything the client wrote.
    pub(crate) received: Vec<u8>,
    pause: Option<Pin<Box<Sleep>>>,
}

impl<'a> Peer<'a> {
    pub(crate) fn new(script: Script<'a>) -> Peer<'a> {
        Peer {
            script,
            sent: 0,
            received: Vec::new(),
            pause: None,
        }
    }
}

impl AsyncRead for Peer<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let peer = &mut *self;
        let left = &peer.script.bytes[peer.sent..];
        if left.is_empty() {
            // Silent: no byte and no close will ever come; only the reader's own timer ends it.
            return if peer.script.silent_after {
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            };
        }
        if peer.sent > 0 && !peer.script.pause.is_zero() {
            let pause = peer
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(peer.script.pause)));
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            peer.pause = None;
        }
        let piece = match peer.script.piece {
            0 => left.len(),
            n => n.min(left.len()),
        };
        let n = piece.min(buf.remaining());
        buf.put_slice(&left[..n]);
        peer.sent += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Peer<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.received.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Closable for &mut Peer<'_> {
    fn tls_over(&mut self) -> Option<&mut TcpStream> {
        None
    }
}

/// Runs `future` to its end on this thread's runtime, whose clock is paused. The runtime is
/// made once per thread, not per input: making one costs more than most inputs take.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime");
    }
    RUNTIME.with(|runtime| runtime.block_on(future))
}
