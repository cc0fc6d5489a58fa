//! The dialogue's reader and writer (`Wire`): bounded reads of lines, byte counts and text up to
//! a marker, every one bounded by the deadline and by [`PLAINTEXT_LIMIT`] bytes and recorded in
//! the run's events (`said`), and the check that nothing follows the go-ahead. The dialects add
//! their own readers (numbered replies, IMAP's tagged lines, XMPP's stream, LDAP's messages) in
//! their files.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, timeout_at};

use super::common::mismatch;
use crate::net::close::read;
use crate::outcome::{Event, Failure, Reason, Trace, quote};

/// The most the server may send us in one dialogue (before or after TLS) while we wait for
/// its answers. A server that floods is failed after this much.
pub(super) const PLAINTEXT_LIMIT: usize = 64 * 1024;

/// One side of a plaintext (or, for the farewell, TLS) dialogue: bounded reads of lines,
/// replies and elements, and every line said recorded in the run's events.
pub(super) struct Wire<'t, S> {
    pub(super) stream: S,
    /// Received and not yet consumed.
    pending: Vec<u8>,
    /// How much of `pending` is known to hold no line end (searches resume there, so a server
    /// that trickles bytes costs linear time).
    searched: usize,
    received: usize,
    pub(super) deadline: Instant,
    pub(super) trace: &'t mut Trace,
}

impl<'t, S: AsyncRead + AsyncWrite + Unpin> Wire<'t, S> {
    pub(super) fn new(stream: S, deadline: Instant, trace: &'t mut Trace) -> Self {
        Wire {
            stream,
            pending: Vec::new(),
            searched: 0,
            received: 0,
            deadline,
            trace,
        }
    }

    pub(super) async fn send(&mut self, bytes: impl AsRef<[u8]>) -> Result<(), Failure> {
        let bytes = bytes.as_ref();
        crate::probe::tcp::stream::send(&mut self.stream, bytes, self.deadline).await?;
        self.trace.record(Event::Said {
            client: true,
            text: said(bytes),
        });
        Ok(())
    }

    /// Ends the plaintext session politely after a refusal: sends the dialect's goodbye (its
    /// answer is drained by the close) and returns the refusal.
    pub(super) async fn goodbye(
        &mut self,
        bytes: impl AsRef<[u8]>,
        failure: Failure,
    ) -> Result<(), Failure> {
        // Best effort: the refusal is the story, whatever sending the goodbye meets.
        let _ = self.send(bytes).await;
        Err(failure)
    }

    pub(super) fn heard(&mut self, text: String) {
        self.trace.record(Event::Said {
            client: false,
            text,
        });
    }

    /// Reads more into `pending`. `waiting_for` names what we wait for, for the failure.
    async fn fill(&mut self, waiting_for: &str) -> Result<(), Failure> {
        if self.received >= PLAINTEXT_LIMIT {
            return Err(mismatch(format!(
                "the server sent {PLAINTEXT_LIMIT} bytes without {waiting_for}"
            )));
        }
        let mut chunk = [0u8; 4096];
        let room = chunk.len().min(PLAINTEXT_LIMIT - self.received);
        match timeout_at(self.deadline, read(&mut self.stream, &mut chunk[..room])).await {
            Err(_) => Err(Failure::new(
                Reason::Timeout,
                format!("{waiting_for} did not come before the deadline"),
            )),
            Ok(Err(e)) => Err(crate::tls::failure(
                &e,
                &format!("waiting for {waiting_for}"),
            )),
            Ok(Ok(0)) => Err(mismatch(format!(
                "the server closed the connection before {waiting_for}"
            ))),
            Ok(Ok(n)) => {
                self.pending.extend_from_slice(&chunk[..n]);
                self.received += n;
                Ok(())
            }
        }
    }

    /// The next line, without its line end, recorded in the run's events.
    pub(super) async fn line(&mut self, waiting_for: &str) -> Result<String, Failure> {
        let line = self.unrecorded_line(waiting_for).await?;
        self.heard(said(line.as_bytes()));
        Ok(line)
    }

    pub(super) async fn unrecorded_line(&mut self, waiting_for: &str) -> Result<String, Failure> {
        loop {
            if let Some(at) = self.pending[self.searched..]
                .iter()
                .position(|&b| b == b'\n')
            {
                let end = self.searched + at;
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                self.searched = 0;
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                return Ok(text);
            }
            self.searched = self.pending.len();
            self.fill(waiting_for).await?;
        }
    }

    pub(super) async fn take(
        &mut self,
        count: usize,
        waiting_for: &str,
    ) -> Result<Vec<u8>, Failure> {
        while self.pending.len() < count {
            self.fill(waiting_for).await?;
        }
        Ok(self.pending.drain(..count).collect())
    }

    /// Reads up to and through the first of `ends`, and returns that text.
    pub(super) async fn until(
        &mut self,
        ends: &[&str],
        waiting_for: &str,
    ) -> Result<String, Failure> {
        let longest = ends.iter().map(|e| e.len()).max().unwrap_or(0);
        loop {
            // Resume a little before the end of the last search, for an end split across reads.
            let from = self.searched.saturating_sub(longest);
            let found = ends
                .iter()
                .filter_map(|end| {
                    let at = self.pending[from..]
                        .windows(end.len())
                        .position(|w| w == end.as_bytes())?;
                    Some(from + at + end.len())
                })
                .min();
            if let Some(through) = found {
                let taken: Vec<u8> = self.pending.drain(..through).collect();
                self.searched = 0;
                let text = String::from_utf8_lossy(&taken).into_owned();
                self.heard(said(text.as_bytes()));
                return Ok(text);
            }
            self.searched = self.pending.len();
            self.fill(waiting_for).await?;
        }
    }

    /// After the go-ahead: fails if the server sent anything more, which the TLS layer would
    /// otherwise take as the start of the handshake.
    pub(super) fn nothing_pending(&self) -> Result<(), Failure> {
        if self.pending.is_empty() {
            return Ok(());
        }
        Err(mismatch(format!(
            "the server sent {} bytes after its go-ahead, before the TLS handshake: {}",
            self.pending.len(),
            quote(&self.pending)
        )))
    }
}

/// What a side said, as the run's events keep it: binary (PostgreSQL, LDAP) as a byte count,
/// text without its line end, escaped and cut.
pub(super) fn said(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t')) =>
        {
            quote(text.trim_end_matches(['\r', '\n']).as_bytes())
        }
        _ => format!("{} bytes", bytes.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::QUOTE_LIMIT;

    #[test]
    fn quotes_are_escaped_and_cut() {
        assert_eq!(quote(b"220 ok\t"), "\"220 ok\\t\"");
        let long = "x".repeat(QUOTE_LIMIT + 5);
        assert_eq!(
            quote(long.as_bytes()),
            format!("\"{}\"...", "x".repeat(QUOTE_LIMIT))
        );
        assert_eq!(said(b"\x00\x00\x00\x08\x04\xd2\x16\x2f"), "8 bytes");
        assert_eq!(said(b"EHLO [127.0.0.1]\r\n"), "\"EHLO [127.0.0.1]\"");
    }
}
