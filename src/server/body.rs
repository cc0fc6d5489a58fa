//! A response body handed to hyper a piece at a time, its answer counted as unsent
//! ([`super::connections`]) until the last piece is taken.
//!
//! Given a whole body, hyper queues all of it at once and drops the body, so the answer would
//! look sent while a client that does not read still holds the rendering in memory. In pieces,
//! hyper takes the next one only when the socket has taken enough of the last (its write
//! buffer is bounded). Each piece is a copy: a slice of the rendering would keep all of it
//! allocated while hyper still queues the last piece, after the answer stopped counting.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use super::connections::InRequest;

/// The size of the pieces: small against a rendering, large enough for few wake-ups.
const PIECE: usize = 64 * 1024;

pub struct Body {
    rest: Bytes,
    request: Option<InRequest>,
}

impl Body {
    /// The answer `body` to `request`. One that fits in a piece is taken whole at once, so it
    /// is not counted as unsent (a flood of small refusals pushes out nobody).
    pub fn new(body: Bytes, request: InRequest) -> Body {
        if body.len() > PIECE {
            request.unsent();
        }
        Body {
            request: Some(request),
            rest: body,
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.rest.is_empty() {
            self.request = None;
            return Poll::Ready(None);
        }
        let take = PIECE.min(self.rest.len());
        let piece = Bytes::copy_from_slice(&self.rest[..take]);
        if take == self.rest.len() {
            // The rendering is freed with the last piece taken, and the answer is sent.
            self.rest = Bytes::new();
            self.request = None;
        } else {
            bytes::Buf::advance(&mut self.rest, take);
        }
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use hyper::body::Body as _;

    use super::*;
    use crate::server::connections::{Connections, PushedOut};

    /// Every frame of `body`, polled as hyper would.
    fn frames(mut body: Body) -> Vec<Bytes> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut frames = Vec::new();
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) {
            frames.push(frame.into_data().unwrap());
        }
        frames
    }

    #[test]
    fn a_large_answer_is_unsent_until_its_last_piece_and_its_pieces_hold_no_rendering() {
        let connections = Connections::new(4, 1);
        let first = connections.admit();
        let mut second = connections.admit();
        let rendering = Bytes::from(vec![7u8; 3 * PIECE + 10]);
        let held = rendering.clone();
        let mut body = Body::new(rendering, second.slot().start());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = Pin::new(&mut body).poll_frame(&mut cx);
        // Still unsent: a second large answer pushes this connection out.
        let other = Body::new(Bytes::from(vec![0u8; PIECE + 1]), first.slot().start());
        assert_eq!(second.pushed_out.try_recv().ok(), Some(PushedOut::Unsent));
        let rest = frames(body);
        assert_eq!(rest.iter().map(Bytes::len).sum::<usize>(), 2 * PIECE + 10);
        // The last piece, still queued in hyper, is a copy: the rendering is not kept for it.
        assert!(held.is_unique(), "a piece still refers to the rendering");
        drop(other);
    }

    #[test]
    fn a_small_answer_is_never_counted_as_unsent() {
        let connections = Connections::new(4, 1);
        let first = connections.admit();
        let mut second = connections.admit();
        let _large = Body::new(Bytes::from(vec![0u8; PIECE + 1]), second.slot().start());
        let small = Body::new(Bytes::from_static(b"Unauthorized\n"), first.slot().start());
        assert!(
            second.pushed_out.try_recv().is_err(),
            "a refusal pushes out nobody"
        );
        assert_eq!(frames(small), [Bytes::from_static(b"Unauthorized\n")]);
    }
}
