//! The TCP probe: connect, an optional send/expect dialogue, an optional hold, and a close that
//! leaves the target nothing to clean up.
//!
//! Closing politely is the point of this module as much as connecting. Dropping a socket that
//! still has unread data makes the kernel send RST, and a proxy in front of the target may then
//! keep a half-open backend session. So every attempt, successful or not, ends the same way:
//! shut down our side (FIN), read and discard until the peer closes too, then drop.

use std::time::Duration;

use regex::bytes::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::{Event, Failure, Outcome, Reason, Trace};
use crate::net::{self, Host, IpVersion};

/// The most an `expect` step buffers while looking for its match. A peer that floods is failed
/// after this much, instead of growing our memory.
pub const EXPECT_WINDOW: usize = 64 * 1024;

/// How long the close waits for the peer's FIN after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The most the close reads and discards while waiting for the peer's FIN.
const CLOSE_DRAIN_LIMIT: usize = 64 * 1024;

/// How many received bytes a mismatch report quotes.
const QUOTE_LIMIT: usize = 120;

#[derive(Debug, Clone)]
pub struct TcpProbe {
    pub host: Host,
    pub port: u16,
    pub ip_version: IpVersion,
    pub steps: Vec<Step>,
    /// How long to keep the connection open after the dialogue, before closing.
    pub hold: Duration,
}

/// One step of a dialogue. `tcp.send`/`tcp.expect` are shorthand for `[send, expect]`.
#[derive(Debug, Clone)]
pub enum Step {
    Send(Vec<u8>),
    /// A regex over the bytes received since the previous match.
    Expect(Regex),
}

impl TcpProbe {
    pub async fn attempt(&self, deadline: Instant) -> Outcome {
        let mut trace = Trace::start();
        let result = self.connect_and_converse(deadline, &mut trace).await;
        Outcome { result, trace }
    }

    async fn connect_and_converse(
        &self,
        deadline: Instant,
        trace: &mut Trace,
    ) -> Result<(), Failure> {
        let resolved = net::resolve(&self.host, self.port, self.ip_version, deadline).await?;
        trace.phases.dns = resolved.lookup;
        trace.address = Some(resolved.addr);
        let (mut stream, connect) = net::connect(resolved.addr, deadline).await?;
        trace.phases.connect = Some(connect);
        let dialogue = self.converse(&mut stream, deadline, trace).await;
        let closed = close(stream, deadline, trace).await;
        // A failed dialogue is the story; a reset while closing matters only if all else went well.
        dialogue.and(closed)
    }

    async fn converse(
        &self,
        stream: &mut TcpStream,
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
        if !self.hold.is_zero() {
            let peer_closed = hold(stream, deadline.min(Instant::now() + self.hold)).await?;
            trace.record(Event::Held { peer_closed });
        }
        Ok(())
    }
}

async fn send(stream: &mut TcpStream, bytes: &[u8], deadline: Instant) -> Result<(), Failure> {
    match timeout_at(deadline, stream.write_all(bytes)).await {
        Err(_) => Err(Failure::new(
            Reason::Timeout,
            "the peer did not take our data before the deadline",
        )),
        Ok(Err(e)) => Err(Failure::io(&e, "sending")),
        Ok(Ok(())) => Ok(()),
    }
}

/// Reads until `regex` matches the unconsumed bytes, then consumes through the match.
/// Returns how many bytes the match consumed.
async fn expect(
    stream: &mut TcpStream,
    regex: &Regex,
    window: &mut Vec<u8>,
    deadline: Instant,
) -> Result<usize, Failure> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(found) = regex.find(window) {
            let consumed = found.end();
            window.drain(..consumed);
            return Ok(consumed);
        }
        let room = EXPECT_WINDOW - window.len();
        if room == 0 {
            return Err(mismatch(
                format!("no match for /{regex}/ in the first {EXPECT_WINDOW} bytes"),
                window,
            ));
        }
        let limit = room.min(chunk.len());
        match timeout_at(deadline, stream.read(&mut chunk[..limit])).await {
            // Silence is a timeout; an answer that never matched is a mismatch worth quoting.
            Err(_) if window.is_empty() => {
                return Err(Failure::new(
                    Reason::Timeout,
                    format!("nothing received before the deadline while expecting /{regex}/"),
                ));
            }
            Err(_) => {
                return Err(mismatch(
                    format!("no match for /{regex}/ before the deadline"),
                    window,
                ));
            }
            Ok(Err(e)) => return Err(Failure::io(&e, "receiving")),
            Ok(Ok(0)) => {
                return Err(mismatch(
                    format!("the peer closed the connection without a match for /{regex}/"),
                    window,
                ));
            }
            Ok(Ok(n)) => window.extend_from_slice(&chunk[..n]),
        }
    }
}

fn mismatch(what: String, received: &[u8]) -> Failure {
    let quoted: String = String::from_utf8_lossy(&received[..received.len().min(QUOTE_LIMIT)])
        .escape_debug()
        .collect();
    let more = if received.len() > QUOTE_LIMIT {
        "..."
    } else {
        ""
    };
    Failure::new(
        Reason::ExpectMismatch,
        format!(
            "{what}; received {} bytes: \"{quoted}\"{more}",
            received.len()
        ),
    )
}

/// Keeps the connection open until `until`, discarding anything the peer sends so that the
/// close stays a FIN. Returns whether the peer closed first.
async fn hold(stream: &mut TcpStream, until: Instant) -> Result<bool, Failure> {
    let mut scratch = [0u8; 4096];
    loop {
        match timeout_at(until, stream.read(&mut scratch)).await {
            Err(_) => return Ok(false),
            Ok(Ok(0)) => return Ok(true),
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return Err(Failure::io(&e, "holding the connection")),
        }
    }
}

/// Sends FIN and waits (briefly, within the deadline) for the peer's, discarding what arrives,
/// so the socket is dropped with nothing unread and the kernel has no reason to send RST.
async fn close(mut stream: TcpStream, deadline: Instant, trace: &mut Trace) -> Result<(), Failure> {
    if let Err(e) = stream.shutdown().await {
        return Err(Failure::io(&e, "closing"));
    }
    let grace_end = deadline.min(Instant::now() + CLOSE_GRACE);
    let mut scratch = [0u8; 4096];
    let mut discarded = 0;
    let peer_closed = loop {
        match timeout_at(grace_end, stream.read(&mut scratch)).await {
            Err(_) => break false,
            Ok(Ok(0)) => break true,
            Ok(Ok(n)) => {
                discarded += n;
                if discarded >= CLOSE_DRAIN_LIMIT {
                    break false;
                }
            }
            Ok(Err(e)) => return Err(Failure::io(&e, "closing")),
        }
    };
    trace.record(Event::Closed {
        peer_closed,
        discarded,
    });
    Ok(())
}
