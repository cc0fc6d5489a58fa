//! STARTTLS: the plaintext dialogue that turns a mail, file, database, directory or chat
//! connection into TLS, one function per dialect, and the polite goodbye inside TLS afterwards.
//!
//! Every read is bounded by the run's deadline and by [`PLAINTEXT_LIMIT`](wire::PLAINTEXT_LIMIT) bytes, and every reply
//! code is checked. A server that does not offer STARTTLS fails the run with
//! `starttls_unsupported`, after we ended its plaintext session as the protocol asks (QUIT,
//! LOGOUT, Unbind, a closed stream), so that it logs a normal client.
//!
//! The go-ahead must be the last thing the server sent before the handshake. Bytes after it
//! would be read as if they had come over TLS (the command injection of CVE-2011-0411 and
//! CVE-2021-23222), so they fail the run instead.
//!
//! The dialogue's reader is in `wire` (SMTP and FTP's numbered replies in `reply`), each
//! dialect in a file of its own (`mail` for SMTP, IMAP and POP3; `ftp`, `postgres`, `ldap` over
//! the BER of `ber`, `xmpp`), and what they share in `common`. This file holds the run, and
//! the dispatch to each dialect before the handshake (`negotiate`) and after it (`farewell`,
//! or `leave_untrusted` when the verdict failed). The dialects' names (`Dialect`) are part of
//! the `tls` options, in `tls::dialect`.

mod ber;
mod common;
mod ftp;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
mod ldap;
mod mail;
mod postgres;
mod reply;
#[cfg(test)]
mod scripted;
mod wire;
mod xmpp;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::stream::handshake;
use crate::net::close::{CLOSE_GRACE, close};
use crate::outcome::{Failure, Reason, Trace};
use crate::tls::{TlsFacts, TlsTarget};
use common::Names;
use mail::{imap_ok, pop3_ok};
use wire::Wire;

pub use crate::tls::dialect::Dialect;

/// Negotiates TLS over a connected `stream`, runs the handshake with the verdict of the TLS
/// probe, says goodbye inside TLS and closes (close_notify, FIN). The `starttls` phase times the
/// plaintext part, from the connection being up (so a slow greeting counts) to the go-ahead.
pub async fn run(
    dialect: Dialect,
    tls: &TlsTarget,
    mut stream: TcpStream,
    deadline: Instant,
    trace: &mut Trace,
    seen: &mut Option<TlsFacts>,
) -> Result<(), Failure> {
    let names = Names::of(&stream, &tls.server_name);
    let started = Instant::now();
    // The dialogue stops short of the deadline by a tenth of the time left (at most the close's
    // grace), so that a server answering late (a greet-pause) meets our close, not a reset.
    let reserve = (deadline.saturating_duration_since(started) / 10).min(CLOSE_GRACE);
    let talk_until = deadline - reserve;
    let mut wire = Wire::new(&mut stream, talk_until, trace);
    let negotiated = match negotiate(dialect, &mut wire, &names).await {
        Ok(()) => wire.nothing_pending(),
        Err(failure) => Err(failure),
    };
    if let Err(failure) = negotiated {
        // The negotiation's failure is the story, whatever the close meets.
        let _ = close(stream, deadline, trace).await;
        return Err(failure);
    }
    trace.phases.starttls = started.elapsed().into();
    let (stream, verdict) = handshake(tls, stream, talk_until, trace, seen).await?;
    let mut wire = Wire::new(stream, talk_until, trace);
    let result = match verdict {
        Ok(()) => {
            let farewell = farewell(dialect, &mut wire, &names).await;
            if farewell.is_ok() {
                wire.trace.answered = Some(wire.trace.elapsed());
            }
            farewell
        }
        Err(failure) => {
            // Best effort: the verdict is the story, whatever the goodbye meets.
            let _ = leave_untrusted(dialect, &mut wire, &names).await;
            Err(failure)
        }
    };
    let stream = wire.stream;
    match (result, close(stream, deadline, trace).await) {
        // A server that has said goodbye may close first, and then answer our close_notify with
        // a reset (vsftpd does): the session ended as the protocol asks. Any other failure of
        // the close counts: an alert there is a TLS 1.3 server refusing our client certificate.
        // PostgreSQL has no goodbye, so it has no reason to reset either.
        (Ok(()), Err(closing))
            if closing.reason == Reason::ConnectionReset && dialect != Dialect::Postgres =>
        {
            Ok(())
        }
        (result, closed) => result.and(closed),
    }
}

/// Ends a session inside TLS with a server whose certificate failed the verdict. It gets only
/// the protocol's goodbye, which carries nothing of ours (XMPP's needs a stream, whose header
/// names only the domain already sent), so that it logs a client that left, not one it lost.
async fn leave_untrusted<S: AsyncRead + AsyncWrite + Unpin>(
    dialect: Dialect,
    wire: &mut Wire<'_, S>,
    names: &Names,
) -> Result<(), Failure> {
    match dialect {
        Dialect::Smtp | Dialect::Pop3 | Dialect::Ftp => wire.send("QUIT\r\n").await,
        Dialect::Imap => wire.send("v2 LOGOUT\r\n").await,
        Dialect::Ldap => wire.send(ber::UNBIND).await,
        Dialect::Postgres => Ok(()),
        Dialect::Xmpp => {
            wire.send(xmpp::open(&names.domain)).await?;
            wire.xmpp_features("the stream features inside TLS").await?;
            wire.xmpp_close().await
        }
    }
}

async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
    dialect: Dialect,
    wire: &mut Wire<'_, S>,
    names: &Names,
) -> Result<(), Failure> {
    match dialect {
        Dialect::Smtp => mail::smtp(wire, names).await,
        Dialect::Imap => mail::imap(wire).await,
        Dialect::Pop3 => mail::pop3(wire).await,
        Dialect::Ftp => ftp::ftp(wire).await,
        Dialect::Postgres => postgres::postgres(wire).await,
        Dialect::Ldap => ldap::ldap(wire).await,
        Dialect::Xmpp => xmpp::xmpp(wire, names).await,
    }
}

/// Inside TLS: what the dialect does to show the session works, then its goodbye.
async fn farewell<S: AsyncRead + AsyncWrite + Unpin>(
    dialect: Dialect,
    wire: &mut Wire<'_, S>,
    names: &Names,
) -> Result<(), Failure> {
    match dialect {
        Dialect::Smtp => {
            wire.send(format!("EHLO {}\r\n", names.client)).await?;
            wire.reply("the EHLO answer inside TLS")
                .await?
                .expect(250, "EHLO inside TLS")?;
            wire.send("QUIT\r\n").await?;
            wire.reply("the QUIT answer").await?.expect(221, "QUIT")
        }
        Dialect::Imap => {
            wire.send("v2 LOGOUT\r\n").await?;
            let done = wire.tagged("v2", "the LOGOUT answer").await?;
            imap_ok(&done, "LOGOUT")
        }
        Dialect::Pop3 => {
            wire.send("QUIT\r\n").await?;
            let answer = wire.line("the QUIT answer").await?;
            pop3_ok(&answer, "QUIT")
        }
        Dialect::Ftp => {
            wire.send("QUIT\r\n").await?;
            wire.reply("the QUIT answer").await?.expect(221, "QUIT")
        }
        // PostgreSQL logs nothing for a client that leaves before its startup packet; anything
        // else would be a login attempt.
        Dialect::Postgres => Ok(()),
        // Any answer to WhoAmI shows the session works; under TLS 1.3 a server that refuses our
        // client certificate does so only after the handshake, and this is where that shows.
        Dialect::Ldap => {
            wire.ldap_extended(ber::WHO_AM_I, 2, "WhoAmI").await?;
            wire.send(ber::UNBIND_AFTER_WHO_AM_I).await
        }
        Dialect::Xmpp => {
            wire.send(xmpp::open(&names.domain)).await?;
            let features = wire.xmpp_features("the stream features inside TLS").await?;
            if let Err(failure) = xmpp::no_error(&features) {
                return wire.goodbye(xmpp::CLOSE, failure).await;
            }
            wire.xmpp_close().await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scripted::negotiation;
    use super::*;

    #[tokio::test]
    async fn bytes_with_the_go_ahead_are_refused() {
        let (result, _) = negotiation(
            async |wire, _| mail::imap(wire).await,
            b"* OK\r\nv1 OK go\r\nv9 OK forged\r\n",
        )
        .await;
        let failure = result.unwrap_err();
        assert_eq!(failure.reason, Reason::ExpectMismatch);
        assert!(
            failure.detail.contains("14 bytes after its go-ahead"),
            "{}",
            failure.detail
        );
        let (result, _) = negotiation(async |wire, _| postgres::postgres(wire).await, b"SE").await;
        assert!(
            result
                .unwrap_err()
                .detail
                .contains("1 bytes after its go-ahead")
        );
    }

    #[test]
    fn dialects_parse_from_their_names_only() {
        for dialect in Dialect::ALL {
            assert_eq!(Dialect::parse(dialect.as_str()), Ok(dialect));
        }
        let error = Dialect::parse("smtps").unwrap_err();
        assert!(
            error.contains("smtp, imap, pop3, ftp, postgres, ldap, xmpp"),
            "{error}"
        );
    }
}
