//! The TCP probe: connect, an optional send/expect dialogue, an optional hold, and a close that
//! leaves the target nothing to clean up.
//!
//! Closing politely is the point of this module as much as connecting. Dropping a socket that
//! still has unread data makes the kernel send RST, and a proxy in front of the target may then
//! keep a half-open backend session. So every attempt, successful or not, ends the same way:
//! shut down our side (FIN), read and discard until the peer closes too, then drop.
//!
//! With `tls`, the dialogue runs inside TLS and the close starts with close_notify. A server
//! whose certificate fails verification gets the handshake finished and closed, and nothing else
//! (STARTTLS adds the protocol's goodbye, see `starttls`).

pub mod config;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod metrics;
#[cfg(any(test, feature = "fuzzing"))]
mod peer;
pub mod report;
pub mod starttls;
pub mod stream;

use std::time::Duration;

use regex::bytes::Regex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, timeout_at};

use crate::net::close::{Closable, close, read};
use crate::net::{self, Host, IpVersion, dns};
use crate::outcome::{Event, Failure, Outcome, Reason, ReasonSet, Trace, quote};
use crate::tls::{TlsFacts, TlsTarget};
use starttls::Dialect;
use stream::{secure, send};

/// The most an `expect` step buffers while looking for its match. A peer that floods is failed
/// after this much, instead of growing our memory.
pub const EXPECT_WINDOW: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct TcpProbe {
    pub host: Host,
    pub port: u16,
    pub ip_version: IpVersion,
    /// `dns.server`: the resolver of the host; `None` for the system's. Boxed, like `tls`:
    /// rarely set, and inline it would be a third of the probe.
    pub resolver: Option<Box<dns::Server>>,
    pub steps: Vec<Step>,
    /// How long to keep the connection open after the dialogue, before closing.
    pub hold: Duration,
    /// Boxed: most tcp targets have no TLS, and a million targets keep their probe each.
    pub tls: Option<Box<TlsTarget>>,
    /// `tls.starttls`: upgrade to TLS with this protocol's dialogue (the config requires `tls`).
    pub starttls: Option<Dialect>,
}

/// One step of a dialogue. `tcp.send`/`tcp.expect` are shorthand for `[send, expect]`.
#[derive(Debug, Clone)]
pub enum Step {
    Send(Vec<u8>),
    /// A regex over the bytes received since the previous match.
    Expect(Regex),
}

/// What a TCP attempt observed beyond the trace.
#[derive(Debug, Clone, Default)]
pub struct TcpFacts {
    /// What the TLS handshake revealed, for targets with TLS that got that far.
    pub tls: Option<Box<TlsFacts>>,
}

impl TcpProbe {
    /// `check-config`'s words for what this probe does beyond its target.
    pub fn summary(&self) -> String {
        self.tls
            .as_deref()
            .map(TlsTarget::summary)
            .unwrap_or_default()
    }

    /// The same check against another `HOST:PORT`.
    pub fn retarget(&self, address: &str) -> Result<TcpProbe, String> {
        let (host, port) = net::parse_host_port(address)?;
        host.check_destination()?;
        Ok(TcpProbe {
            tls: match &self.tls {
                Some(tls) => Some(Box::new(tls.client.target(&host)?)),
                None => None,
            },
            host,
            port,
            ..self.clone()
        })
    }

    /// Every reason a run of this probe can end with.
    pub fn reasons(&self) -> ReasonSet {
        let mut set = net::CONNECT_REASONS.union(ReasonSet::of(&[Reason::ExpectMismatch]));
        if self.tls.is_some() {
            set = set.union(crate::tls::REASONS);
        }
        if self.starttls.is_some() {
            set = set.union(ReasonSet::of(&[Reason::StarttlsUnsupported]));
        }
        set
    }

    pub async fn attempt(&self, deadline: Instant) -> Outcome<TcpFacts> {
        let mut trace = Trace::start();
        let mut tls = None;
        let result = self
            .connect_and_converse(deadline, &mut trace, &mut tls)
            .await;
        // Boxed: kept as every target's latest run, and most targets have no TLS.
        let facts = TcpFacts {
            tls: tls.map(Box::new),
        };
        Outcome::with_facts(result, trace, facts)
    }

    async fn connect_and_converse(
        &self,
        deadline: Instant,
        trace: &mut Trace,
        seen: &mut Option<TlsFacts>,
    ) -> Result<(), Failure> {
        let stream = net::open(
            &self.host,
            self.port,
            self.ip_version,
            self.resolver.as_deref().copied(),
            deadline,
            trace,
        )
        .await?;
        let Some(tls) = &self.tls else {
            return self.converse_and_close(stream, deadline, trace).await;
        };
        match self.starttls {
            Some(dialect) => starttls::run(dialect, tls, stream, deadline, trace, seen).await,
            None => {
                let stream = secure(tls, stream, deadline, trace, seen).await?;
                self.converse_and_close(stream, deadline, trace).await
            }
        }
    }

    async fn converse_and_close<S: Closable>(
        &self,
        mut stream: S,
        deadline: Instant,
        trace: &mut Trace,
    ) -> Result<(), Failure> {
        let mut dialogue = self.converse(&mut stream, deadline, trace).await;
        if dialogue.is_ok() {
            trace.answered = Some(trace.elapsed());
            if !self.hold.is_zero() {
                let until = deadline.min(Instant::now() + self.hold);
                dialogue = hold(&mut stream, until)
                    .await
                    .map(|peer_closed| trace.record(Event::Held { peer_closed }));
            }
        }
        let closed = close(stream, deadline, trace).await;
        // A failed dialogue is the story; a reset while closing matters only if all else went well.
        dialogue.and(closed)
    }

    async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        deadline: Instant,
        trace: &mut Trace,
    ) -> Result<(), Failure> {
        let mut window = Vec::new();
        for (index, step) in self.steps.iter().enumerate() {
            match step {
                Step::Send(bytes) => {
                    send(stream, bytes, deadline)
                        .await
                        .map_err(|f| f.at_step(index))?;
                    trace.record(Event::Sent {
                        step: index,
                        bytes: bytes.len(),
                    });
                }
                Step::Expect(regex) => {
                    let consumed = expect(stream, regex, &mut window, deadline)
                        .await
                        .map_err(|f| f.at_step(index))?;
                    trace.record(Event::Matched {
                        step: index,
                        bytes: consumed,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Reads until `regex` matches the unconsumed bytes, then consumes through the match.
/// Returns how many bytes the match consumed.
///
/// Scanning the whole window after every read would let a peer that trickles single bytes cost
/// quadratic CPU, so once the window is past [`EAGER_SCAN`] a scan waits until the window has
/// grown by an eighth or the peer has paused for [`QUIET`]. Every way out scans what is unscanned
/// first, so a match is never missed, only (for large, trickled answers) seen up to `QUIET` late.
async fn expect<S: AsyncRead + Unpin>(
    stream: &mut S,
    regex: &Regex,
    window: &mut Vec<u8>,
    deadline: Instant,
) -> Result<usize, Failure> {
    let mut chunk = [0u8; 4096];
    let mut scan = Scan::default();
    loop {
        if scan.worth_it(window.len())
            && let Some(consumed) = scan.run(regex, window)
        {
            return Ok(consumed);
        }
        // Checked here, not only by the read's timer: that fires only when the read would block,
        // and a peer that always has data ready would never let it.
        let full = window.len() >= EXPECT_WINDOW;
        if full || Instant::now() >= deadline {
            if let Some(consumed) = scan.run(regex, window) {
                return Ok(consumed);
            }
            return Err(if full {
                mismatch(
                    format!("no match for /{regex}/ in the first {EXPECT_WINDOW} bytes"),
                    window,
                )
            } else if window.is_empty() {
                // Silence is a timeout; an answer that never matched is a mismatch worth quoting.
                Failure::new(
                    Reason::Timeout,
                    format!("nothing received before the deadline while expecting /{regex}/"),
                )
            } else {
                mismatch(
                    format!("no match for /{regex}/ before the deadline"),
                    window,
                )
            });
        }
        let wait_until = if scan.pending(window.len()) {
            deadline.min(Instant::now() + QUIET)
        } else {
            deadline
        };
        let room = (EXPECT_WINDOW - window.len()).min(chunk.len());
        match timeout_at(wait_until, read(stream, &mut chunk[..room])).await {
            // The peer paused (or the deadline came): scan what is pending on the next pass.
            Err(_) => scan.force(),
            Ok(Err(e)) => return Err(crate::tls::failure(&e, "receiving")),
            Ok(Ok(0)) => {
                if let Some(consumed) = scan.run(regex, window) {
                    return Ok(consumed);
                }
                return Err(mismatch(
                    format!("the peer closed the connection without a match for /{regex}/"),
                    window,
                ));
            }
            Ok(Ok(n)) => window.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Windows up to this size are scanned after every read: replies this small are the normal case.
const EAGER_SCAN: usize = 4096;

/// How long a pending scan waits for more bytes before it runs anyway.
const QUIET: Duration = Duration::from_millis(2);

/// When the expect window was last scanned, to decide whether scanning again is worth it.
#[derive(Default)]
struct Scan {
    /// Window length at the last scan; `None` before the first (an empty window may match).
    scanned: Option<usize>,
    forced: bool,
}

impl Scan {
    fn pending(&self, len: usize) -> bool {
        self.scanned.is_none_or(|s| s < len)
    }

    fn worth_it(&self, len: usize) -> bool {
        match self.scanned {
            None => true,
            Some(s) => s < len && (self.forced || len <= EAGER_SCAN || len - s >= len / 8),
        }
    }

    fn force(&mut self) {
        self.forced = true;
    }

    /// Scans if anything is unscanned; on a match, consumes through it and returns its length.
    fn run(&mut self, regex: &Regex, window: &mut Vec<u8>) -> Option<usize> {
        if !self.pending(window.len()) {
            return None;
        }
        self.scanned = Some(window.len());
        self.forced = false;
        let consumed = regex.find(window)?.end();
        window.drain(..consumed);
        Some(consumed)
    }
}

fn mismatch(what: String, received: &[u8]) -> Failure {
    Failure::new(
        Reason::ExpectMismatch,
        format!(
            "{what}; received {} bytes: {}",
            received.len(),
            quote(received)
        ),
    )
}

/// What the hold reads as it arrives: greetings, keepalives, a goodbye.
const HOLD_UNPACED: usize = 64 * 1024;

/// Past [`HOLD_UNPACED`], the hold reads at most [`HOLD_CHUNK`] bytes per [`HOLD_PACE`].
const HOLD_CHUNK: usize = 64 * 1024;
const HOLD_PACE: Duration = Duration::from_millis(10);

/// Keeps the connection open until `until`, discarding anything the peer sends so that the
/// close stays a FIN. Returns whether the peer closed first.
///
/// Reading a flood as fast as it comes cost a core. Not reading it at all would hide the
/// peer's close, which arrives behind what it sent. So past [`HOLD_UNPACED`] the hold reads at
/// a bounded pace (6.4 MB/s), TCP's flow control slows the peer to that pace, and a close or
/// reset is still seen once what came before it is read.
async fn hold<S: AsyncRead + Unpin>(stream: &mut S, until: Instant) -> Result<bool, Failure> {
    // Small for the usual hold, where the peer sends little or nothing; a paced read takes a
    // whole chunk.
    let mut scratch = vec![0u8; 4096];
    let mut received = 0;
    loop {
        if received >= HOLD_UNPACED {
            scratch.resize(HOLD_CHUNK, 0);
            tokio::time::sleep_until(until.min(Instant::now() + HOLD_PACE)).await;
        }
        // Explicit: a peer that never stops sending would never let the read's timer fire.
        if Instant::now() >= until {
            return Ok(false);
        }
        match timeout_at(until, read(stream, &mut scratch)).await {
            Err(_) => return Ok(false),
            Ok(Ok(0)) => return Ok(true),
            Ok(Ok(n)) => received += n,
            Ok(Err(e)) => return Err(crate::tls::failure(&e, "holding the connection")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Close;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::AsyncWriteExt;
    use tokio::io::ReadBuf;
    use tokio::net::TcpStream;

    /// A peer whose data is always ready: every read blocks 50 µs, then returns one byte, and is
    /// never `Pending`, so no timer can fire while reading. It closes after 100 000 bytes (5 s),
    /// which keeps a regression from hanging the test.
    struct AlwaysReady {
        left: usize,
    }

    impl AlwaysReady {
        fn new() -> Self {
            AlwaysReady { left: 100_000 }
        }
    }

    impl AsyncRead for AlwaysReady {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.left > 0 {
                std::thread::sleep(Duration::from_micros(50));
                buf.put_slice(b"z");
                self.left -= 1;
            }
            Poll::Ready(Ok(()))
        }
    }

    impl Closable for AlwaysReady {
        fn tls_over(&mut self) -> Option<&mut TcpStream> {
            None
        }
    }

    impl AsyncWrite for AlwaysReady {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    // Regression: a read's timer fires only when the read would block. A peer with data always
    // ready ran expect past its deadline into the run's backstop, which dropped the trace and
    // the gentle close. Every loop now checks the time itself.

    #[tokio::test]
    async fn expect_stops_at_the_deadline_when_data_is_always_ready() {
        let regex = Regex::new("never").unwrap();
        let deadline = Instant::now() + Duration::from_millis(200);
        let failure = expect(&mut AlwaysReady::new(), &regex, &mut Vec::new(), deadline)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::ExpectMismatch);
        assert!(
            failure.detail.contains("before the deadline"),
            "{}",
            failure.detail
        );
    }

    #[tokio::test]
    async fn hold_ends_on_time_when_data_is_always_ready() {
        let until = Instant::now() + Duration::from_millis(200);
        let peer_closed = hold(&mut AlwaysReady::new(), until).await.unwrap();
        assert!(
            !peer_closed,
            "the hold ended at its time, not when the peer stopped"
        );
    }

    #[tokio::test]
    async fn close_gives_up_waiting_on_time_when_data_is_always_ready() {
        let mut trace = Trace::start();
        let deadline = Instant::now() + Duration::from_millis(200);
        close(AlwaysReady::new(), deadline, &mut trace)
            .await
            .unwrap();
        assert!(
            matches!(
                trace.events.last().map(|e| &e.what),
                Some(Event::Closed {
                    how: Close::GraceOver,
                    ..
                })
            ),
            "{:?}",
            trace.events
        );
    }

    #[tokio::test]
    async fn a_large_answer_is_matched_even_when_it_arrives_in_small_pieces() {
        // Past EAGER_SCAN bytes scans are batched; the match must still be found, and promptly.
        let mut answer = vec![b'.'; 20_000];
        answer.extend_from_slice(b"READY\r\n");
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::spawn(async move {
            for piece in answer.chunks(7) {
                server.write_all(piece).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let regex = Regex::new("READY\r\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut window = Vec::new();
        let consumed = expect(&mut client, &regex, &mut window, deadline)
            .await
            .unwrap();
        assert_eq!(consumed, 20_007);
        assert!(
            Instant::now() < deadline - Duration::from_secs(5),
            "found by the quiet scan, not the deadline"
        );
    }
}
