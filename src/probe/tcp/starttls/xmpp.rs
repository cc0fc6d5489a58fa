//! XMPP (RFC 6120 5.4): the stream's pieces we send and look for, the dialogue to `<proceed/>`,
//! and the stream's features and close on the wire (`Wire::xmpp_features`, `Wire::xmpp_close`).

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::common::{Names, mismatch, unsupported};
use super::wire::Wire;
use crate::net::close::CLOSE_GRACE;
use crate::outcome::{Failure, quote};

pub(super) const TLS_NAMESPACE: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub(super) const STARTTLS: &str = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
pub(super) const CLOSE: &str = "</stream:stream>";
/// Where the features end: closed, empty, or replaced by a stream error or the stream's end.
pub(super) const FEATURES_END: [&str; 5] = [
    "</stream:features>",
    "<stream:features/>",
    "<stream:features />",
    "</stream:error>",
    CLOSE,
];
/// Where the answer to starttls ends (`<proceed .../>`, `<failure .../>`) or what ends
/// the stream instead.
pub(super) const ANSWER_ENDS: [&str; 5] =
    ["/>", "</proceed>", "</failure>", "</stream:error>", CLOSE];

pub(super) fn open(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' \
         xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )
}

/// A stream error (an unknown domain, say) as a failure that names its condition.
pub(super) fn no_error(received: &str) -> Result<(), Failure> {
    match received.find("<stream:error") {
        None => Ok(()),
        Some(at) => Err(mismatch(format!(
            "the server ended the stream with an error: {}",
            quote(&received.as_bytes()[at..])
        ))),
    }
}

/// XMPP (RFC 6120 5.4): stream header, features offering starttls, starttls, proceed; after
/// TLS, a new stream whose features show the session works, then the stream's close.
pub(super) async fn xmpp<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<'_, S>,
    names: &Names,
) -> Result<(), Failure> {
    wire.send(open(&names.domain)).await?;
    let features = wire.xmpp_features("the stream features").await?;
    if let Err(failure) = no_error(&features) {
        return wire.goodbye(CLOSE, failure).await;
    }
    if !features.contains(TLS_NAMESPACE) {
        // Best effort: the refusal is the story, whatever the stream's close meets.
        let _ = wire.xmpp_close().await;
        return Err(unsupported("the stream features do not offer starttls"));
    }
    wire.send(STARTTLS).await?;
    let answer = wire.until(&ANSWER_ENDS, "the answer to starttls").await?;
    if answer.contains("<proceed") {
        return Ok(());
    }
    let failure = if answer.contains("<failure") {
        unsupported(format!(
            "starttls was answered {}",
            quote(answer.as_bytes())
        ))
    } else {
        no_error(&answer).err().unwrap_or_else(|| {
            mismatch(format!(
                "starttls was answered neither proceed nor failure: {}",
                quote(answer.as_bytes())
            ))
        })
    };
    // The server closes its stream after a failure or an error; we close ours (RFC 6120 4.4).
    wire.goodbye(CLOSE, failure).await
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<'_, S> {
    pub(super) async fn xmpp_features(&mut self, waiting_for: &str) -> Result<String, Failure> {
        self.until(&FEATURES_END, waiting_for).await
    }

    /// Closes the stream and waits, as long as the close would, for the server to close its own
    /// (RFC 6120 4.4): closing the connection at once races the server, which may then log a
    /// lost connection. A server that keeps its stream open is left to the close.
    pub(super) async fn xmpp_close(&mut self) -> Result<(), Failure> {
        self.send(CLOSE).await?;
        let deadline = self.deadline;
        self.deadline = deadline.min(Instant::now() + CLOSE_GRACE);
        let _ = self.until(&[CLOSE], "the server's end of the stream").await;
        self.deadline = deadline;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::scripted::{negotiation, reason, text};
    use super::*;
    use crate::outcome::Reason;

    #[tokio::test]
    async fn xmpp_closes_its_stream_after_a_failure_and_knows_empty_features() {
        let header = "<?xml version='1.0'?><stream:stream from='example.com' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
        let offer = "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>";
        let failure = "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>";
        let (result, sent) =
            negotiation(xmpp, format!("{header}{offer}{failure}").as_bytes()).await;
        assert_eq!(reason(&result), Some(Reason::StarttlsUnsupported));
        let sent = text(&sent);
        assert!(sent.contains("to='example.com'"), "{sent}");
        assert!(sent.ends_with(&format!("{}{}", STARTTLS, CLOSE)), "{sent}");

        let empty = format!("{header}<stream:features />");
        let (result, sent) = negotiation(xmpp, empty.as_bytes()).await;
        assert_eq!(
            reason(&result),
            Some(Reason::StarttlsUnsupported),
            "not a timeout"
        );
        let sent = text(&sent);
        assert!(sent.ends_with(CLOSE), "{sent}");
    }
}
