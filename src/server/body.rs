//! A response body handed to hyper a piece at a time, holding its request in progress until
//! the last piece is taken.
//!
//! Given a whole body, hyper queues all of it at once and drops the body, so the request would
//! look finished while a client that does not read still holds the rendering in memory. In
//! pieces, hyper takes the next one only when the socket has taken the last (its write buffer
//! is bounded), so the request stays in progress, and counted ([`super::connections`]), as long
//! as its client has not read it.

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
    pub fn new(body: Bytes, request: InRequest) -> Body {
        Body {
            request: (!body.is_empty()).then_some(request),
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
            return Poll::Ready(None);
        }
        let take = PIECE.min(self.rest.len());
        let piece = self.rest.split_to(take);
        if self.rest.is_empty() {
            self.request = None;
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
