//! A stream lent to hyper and given back: hyper drives the request, vantage closes the
//! connection, and the first response byte is stamped on the way.
//!
//! hyper's own close is a bare shutdown followed by a drop, which leaves any late bytes of the
//! server (its close_notify, say) unread and makes the kernel answer them with RST. So hyper
//! gets a handle whose shutdown does nothing; once hyper is done (or given up on) the probe takes
//! the stream back and closes it the gentle way, as the TCP probe does. For HTTP/2 hyper moves
//! the connection into a task of its own, so the stream sits behind a lock rather than a borrow.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The owner's side: takes the stream back and reads the stamps.
pub struct Lender<S> {
    shared: Arc<Shared<S>>,
}

#[derive(Default)]
struct Stamps {
    /// When the last write before the first response byte began: when the request was handed
    /// to the network. Not when it returned: on loopback the kernel delivers the bytes and wakes
    /// the server inside the write, which can answer before the call returns (a 7 µs "ttfb" for
    /// nginx, whose answers otherwise take 100 µs).
    last_write: Option<Instant>,
    first_read: Option<Instant>,
}

/// hyper's side.
pub struct Lent<S> {
    shared: Arc<Shared<S>>,
}

struct Shared<S> {
    loan: Mutex<Loan<S>>,
    /// Signalled when hyper drops its handle.
    returned: Notify,
}

struct Loan<S> {
    stream: Option<S>,
    stamps: Stamps,
    /// The task that last found the stream not ready, woken when the stream is taken back so
    /// that it sees the stream gone and ends instead of waiting for a wake-up that never comes.
    parked: Option<Waker>,
}

pub fn lend<S>(stream: S) -> (Lender<S>, Lent<S>) {
    let shared = Arc::new(Shared {
        loan: Mutex::new(Loan {
            stream: Some(stream),
            stamps: Stamps::default(),
            parked: None,
        }),
        returned: Notify::new(),
    });
    (
        Lender {
            shared: Arc::clone(&shared),
        },
        Lent { shared },
    )
}

impl<S> Lender<S> {
    /// Waits until hyper has dropped its handle, or until `until`, then takes the stream back.
    pub async fn take_back(self, until: Instant) -> Option<S> {
        let _ = tokio::time::timeout_at(until, self.shared.returned.notified()).await;
        // The lender's drop wakes whoever waits on the stream.
        lock(&self.shared.loan).stream.take()
    }

    /// From the request's last write to the response's first byte read.
    pub fn first_byte(&self) -> Option<std::time::Duration> {
        let stamps = &lock(&self.shared.loan).stamps;
        Some(stamps.first_read? - stamps.last_write?)
    }
}

/// A run cancelled mid-exchange (a reload stopping its target) drops the lender without taking
/// the stream back. The stream then closes with the lender, and hyper's task (which HTTP/2
/// keeps apart) is woken to find it gone and end, instead of waiting on it forever.
impl<S> Drop for Lender<S> {
    fn drop(&mut self) {
        let mut loan = lock(&self.shared.loan);
        drop(loan.stream.take());
        if let Some(waker) = loan.parked.take() {
            waker.wake();
        }
    }
}

impl<S> Drop for Lent<S> {
    fn drop(&mut self) {
        // `notify_one` keeps a permit when nobody waits yet, so a drop is never missed.
        self.shared.returned.notify_one();
    }
}

fn lock<S>(loan: &Mutex<Loan<S>>) -> MutexGuard<'_, Loan<S>> {
    // A panic while holding the lock cannot leave a loan half-updated in a way that matters.
    loan.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn taken() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the probe closed the connection",
    )
}

impl<S> Lent<S> {
    /// Polls the stream, parking the task when it is not ready; `op` gets the stream and the loan.
    fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut S>, &mut Context<'_>, &mut Stamps) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>>
    where
        S: Unpin,
    {
        let mut guard = lock(&self.shared.loan);
        let loan = &mut *guard;
        let Some(stream) = loan.stream.as_mut() else {
            return Poll::Ready(Err(taken()));
        };
        let poll = op(Pin::new(stream), cx, &mut loan.stamps);
        if poll.is_pending() {
            loan.parked = Some(cx.waker().clone());
        }
        poll
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Lent<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.poll(cx, |stream, cx, stamps| {
            let before = buf.filled().len();
            let poll = match stream.poll_read(cx, buf) {
                // A body that ends with the connection has ended, close_notify or not.
                Poll::Ready(Err(e)) if crate::net::close::closed_without_close_notify(&e) => {
                    Poll::Ready(Ok(()))
                }
                other => other,
            };
            if matches!(poll, Poll::Ready(Ok(())))
                && buf.filled().len() > before
                && stamps.first_read.is_none()
                && stamps.last_write.is_some()
            {
                stamps.first_read = Some(Instant::now());
            }
            poll
        })
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Lent<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll(cx, |stream, cx, stamps| {
            let began = Instant::now();
            let poll = stream.poll_write(cx, buf);
            stamp_write(&poll, began, stamps);
            poll
        })
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll(cx, |stream, cx, stamps| {
            let began = Instant::now();
            let poll = stream.poll_write_vectored(cx, bufs);
            stamp_write(&poll, began, stamps);
            poll
        })
    }

    fn is_write_vectored(&self) -> bool {
        lock(&self.shared.loan)
            .stream
            .as_ref()
            .is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll(cx, |stream, cx, _| stream.poll_flush(cx))
    }

    /// Nothing: the probe closes the stream itself once it has it back.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn stamp_write(poll: &Poll<io::Result<usize>>, began: Instant, stamps: &mut Stamps) {
    if matches!(poll, Poll::Ready(Ok(n)) if *n > 0) && stamps.first_read.is_none() {
        stamps.last_write = Some(began);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn stamps_request_sent_to_first_response_byte() {
        let (client, mut server) = tokio::io::duplex(1024);
        let (lender, mut lent) = lend(client);
        lent.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut request = [0u8; 18];
        server.read_exact(&mut request).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        server.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        let mut answer = [0u8; 4];
        lent.read_exact(&mut answer).await.unwrap();
        let first_byte = lender.first_byte().unwrap();
        assert!(first_byte >= Duration::from_millis(50), "{first_byte:?}");
    }

    /// A stream whose writes return only `0` after the bytes went out, as a loopback write that
    /// runs the server's wake-up before it returns.
    struct LateToReturn<S>(S, Duration);

    impl<S: AsyncRead + Unpin> AsyncRead for LateToReturn<S> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for LateToReturn<S> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let poll = Pin::new(&mut self.0).poll_write(cx, buf);
            std::thread::sleep(self.1);
            poll
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_request_counts_as_sent_when_its_write_began() {
        let (client, mut server) = tokio::io::duplex(1024);
        let answering = tokio::spawn(async move {
            let mut request = [0u8; 18];
            server.read_exact(&mut request).await.unwrap();
            server.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
            server
        });
        let late = Duration::from_millis(40);
        let (lender, mut lent) = lend(LateToReturn(client, late));
        lent.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let _server = answering.await.unwrap();
        let mut answer = [0u8; 4];
        lent.read_exact(&mut answer).await.unwrap();
        let first_byte = lender.first_byte().unwrap();
        assert!(
            first_byte >= late,
            "the answer came while the write was returning: {first_byte:?}"
        );
    }

    #[tokio::test]
    async fn shutdown_is_left_to_the_owner_who_gets_the_stream_back() {
        let (client, mut server) = tokio::io::duplex(1024);
        let (lender, mut lent) = lend(client);
        lent.shutdown().await.unwrap();
        drop(lent);
        let mut stream = lender
            .take_back(Instant::now() + Duration::from_secs(5))
            .await
            .expect("the stream comes back");
        stream.write_all(b"still open").await.unwrap();
        let mut seen = [0u8; 10];
        server.read_exact(&mut seen).await.unwrap();
        assert_eq!(&seen, b"still open");
    }

    #[tokio::test]
    async fn a_dropped_lender_closes_the_stream_and_wakes_the_reader() {
        let (client, mut server) = tokio::io::duplex(1024);
        let (lender, mut lent) = lend(client);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            lent.read(&mut buf).await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(lender);
        let read = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("the parked reader was woken")
            .unwrap();
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::NotConnected);
        let mut rest = Vec::new();
        assert_eq!(server.read_to_end(&mut rest).await.unwrap(), 0, "closed");
    }

    #[tokio::test]
    async fn a_parked_reader_is_woken_and_fails_when_the_stream_is_taken() {
        let (client, _server) = tokio::io::duplex(1024);
        let (lender, mut lent) = lend(client);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            lent.read(&mut buf).await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The reader still holds its handle: taking back waits until `until`, then takes.
        let stream = lender
            .take_back(Instant::now() + Duration::from_millis(20))
            .await;
        assert!(stream.is_some());
        let read = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("the parked reader was woken")
            .unwrap();
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::NotConnected);
    }
}
