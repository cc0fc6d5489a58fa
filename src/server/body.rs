//! A response body handed to hyper a piece at a time, its answer counted as unsent
//! ([`super::connections`]) until the last piece is taken.
//!
//! Given a whole body, hyper queues all of it at once and drops the body, so the answer would
//! look sent while a client that does not read still holds the rendering in memory. In pieces,
//! hyper takes the next one only when the socket has taken enough of the last (its write
//! buffer is bounded). Each piece is a copy: a slice of the rendering would keep all of it
//! allocated while hyper still queues the last piece, after the answer stopped counting.
//!
//! A streamed answer (`/metrics`) comes as pieces from its rendering, through a channel of a
//! few pieces: it counts as unsent from the start, and a client that stops reading stops the
//! rendering (it waits for room in the channel) instead of making it pile up.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

use super::connections::InRequest;

/// The size of the pieces: small against a rendering, large enough for few wake-ups.
pub const PIECE: usize = 64 * 1024;

/// What a streamed answer's rendering hands over: a piece, or the end. A channel that closes
/// without the end means the rendering failed: the answer must not look complete.
pub enum Piece {
    Data(Bytes),
    End,
}

/// An answer, whole or streamed.
pub enum Payload {
    Whole(Bytes),
    Stream(mpsc::Receiver<Piece>),
}

pub struct Body {
    rest: Bytes,
    stream: Option<mpsc::Receiver<Piece>>,
    request: Option<InRequest>,
}

impl Body {
    /// The answer `payload` to `request`. One that fits in a piece is taken whole at once, so
    /// it is not counted as unsent (a flood of small refusals pushes out nobody).
    pub fn new(payload: Payload, request: InRequest) -> Body {
        let (rest, stream) = match payload {
            Payload::Whole(body) => (body, None),
            Payload::Stream(pieces) => (Bytes::new(), Some(pieces)),
        };
        if rest.len() > PIECE || stream.is_some() {
            request.unsent();
        }
        Body {
            request: Some(request),
            rest,
            stream,
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(pieces) = &mut self.stream {
            return match pieces.poll_recv(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Piece::Data(piece))) => Poll::Ready(Some(Ok(Frame::data(piece)))),
                Poll::Ready(Some(Piece::End)) => {
                    self.stream = None;
                    self.request = None;
                    Poll::Ready(None)
                }
                Poll::Ready(None) => {
                    self.stream = None;
                    self.request = None;
                    Poll::Ready(Some(Err(io::Error::other("the rendering failed"))))
                }
            };
        }
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
        self.rest.is_empty() && self.stream.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.stream {
            Some(_) => SizeHint::default(),
            None => SizeHint::with_exact(self.rest.len() as u64),
        }
    }
}

/// A plain-text answer.
pub fn text(status: StatusCode, body: &'static str) -> Response<Payload> {
    respond(status, "text/plain; charset=utf-8", body)
}

pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Payload> {
    answer(status, content_type, Payload::Whole(body.into()))
}

pub fn answer(
    status: StatusCode,
    content_type: &'static str,
    payload: Payload,
) -> Response<Payload> {
    let mut response = Response::new(payload);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
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
        let mut body = Body::new(Payload::Whole(rendering), second.slot().start());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = Pin::new(&mut body).poll_frame(&mut cx);
        // Still unsent: a second large answer pushes this connection out.
        let other = Body::new(
            Payload::Whole(Bytes::from(vec![0u8; PIECE + 1])),
            first.slot().start(),
        );
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
        let _large = Body::new(
            Payload::Whole(Bytes::from(vec![0u8; PIECE + 1])),
            second.slot().start(),
        );
        let small = Body::new(
            Payload::Whole(Bytes::from_static(b"Unauthorized\n")),
            first.slot().start(),
        );
        assert!(
            second.pushed_out.try_recv().is_err(),
            "a refusal pushes out nobody"
        );
        assert_eq!(frames(small), [Bytes::from_static(b"Unauthorized\n")]);
    }

    #[test]
    fn a_stream_is_unsent_until_its_end_and_a_rendering_that_stops_short_is_an_error() {
        let connections = Connections::new(4, 1);
        let first = connections.admit();
        let mut second = connections.admit();
        let (pieces, stream) = mpsc::channel(4);
        let mut body = Body::new(Payload::Stream(stream), second.slot().start());
        pieces
            .try_send(Piece::Data(Bytes::from_static(b"a")))
            .unwrap();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(Some(Ok(_)))
        ));
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        // Even a small stream is unsent: another answer pushes this connection out.
        let _other = Body::new(
            Payload::Whole(Bytes::from(vec![0u8; PIECE + 1])),
            first.slot().start(),
        );
        assert_eq!(second.pushed_out.try_recv().ok(), Some(PushedOut::Unsent));
        pieces.try_send(Piece::End).unwrap();
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(None)
        ));
        assert!(body.is_end_stream());

        let third = connections.admit();
        let (pieces, stream) = mpsc::channel(4);
        let mut cut = Body::new(Payload::Stream(stream), third.slot().start());
        pieces
            .try_send(Piece::Data(Bytes::from_static(b"a")))
            .unwrap();
        drop(pieces);
        assert!(matches!(
            Pin::new(&mut cut).poll_frame(&mut cx),
            Poll::Ready(Some(Ok(_)))
        ));
        assert!(
            matches!(
                Pin::new(&mut cut).poll_frame(&mut cx),
                Poll::Ready(Some(Err(_)))
            ),
            "a stream without its end must not look complete"
        );
    }
}
