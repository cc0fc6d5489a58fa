//! STARTTLS: the plaintext dialogue that turns a mail, file, database, directory or chat
//! connection into TLS, one function per dialect, and the polite goodbye inside TLS afterwards.
//!
//! Every read is bounded by the run's deadline and by [`PLAINTEXT_LIMIT`] bytes, and every reply
//! code is checked. A server that does not offer STARTTLS fails the run with
//! `starttls_unsupported`, after we ended its plaintext session as the protocol asks (QUIT,
//! LOGOUT, Unbind, a closed stream), so that it logs a normal client.
//!
//! The go-ahead must be the last thing the server sent before the handshake. Bytes after it
//! would be read as if they had come over TLS (the command injection of CVE-2011-0411 and
//! CVE-2021-23222), so they fail the run instead.

use std::net::IpAddr;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::handshake;
use crate::net::close::{CLOSE_GRACE, close, read};
use crate::outcome::{Event, Failure, Reason, Trace, quote};
use crate::tls::{TlsFacts, TlsTarget};

/// The most the server may send us in one dialogue (before or after TLS) while we wait for
/// its answers. A server that floods is failed after this much.
const PLAINTEXT_LIMIT: usize = 64 * 1024;

/// The most lines one SMTP or FTP reply may have (an EHLO answer has a dozen).
const REPLY_LINES: usize = 200;

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
    trace.phases.starttls = Some(started.elapsed());
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
        Dialect::Ldap => wire.send(ldap::UNBIND).await,
        Dialect::Postgres => Ok(()),
        Dialect::Xmpp => {
            wire.send(xmpp::open(&names.domain)).await?;
            wire.xmpp_features("the stream features inside TLS").await?;
            wire.xmpp_close().await
        }
    }
}

/// The names the dialogues announce: ours for SMTP's EHLO, the server's for XMPP's stream.
struct Names {
    /// An address literal of our end of the connection, always a valid EHLO argument (RFC 5321
    /// 4.1.3), where a host name could be one the server rejects.
    client: String,
    /// The XMPP domain: the TLS server name (`tls.server_name`, else the host).
    domain: String,
}

impl Names {
    fn of(stream: &TcpStream, server_name: &ServerName<'_>) -> Names {
        let client = match stream.local_addr().map(|a| a.ip()) {
            Ok(IpAddr::V4(ip)) => format!("[{ip}]"),
            Ok(IpAddr::V6(ip)) => format!("[IPv6:{ip}]"),
            Err(_) => "[127.0.0.1]".to_string(),
        };
        let domain = match server_name {
            ServerName::DnsName(name) => name.as_ref().to_string(),
            ServerName::IpAddress(ip) => match IpAddr::from(*ip) {
                IpAddr::V4(ip) => ip.to_string(),
                // An IPv6 domainpart is bracketed (RFC 7622 3.2).
                IpAddr::V6(ip) => format!("[{ip}]"),
            },
            other => format!("{other:?}"),
        };
        Names { client, domain }
    }
}

async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
    dialect: Dialect,
    wire: &mut Wire<'_, S>,
    names: &Names,
) -> Result<(), Failure> {
    match dialect {
        Dialect::Smtp => smtp(wire, names).await,
        Dialect::Imap => imap(wire).await,
        Dialect::Pop3 => pop3(wire).await,
        Dialect::Ftp => ftp(wire).await,
        Dialect::Postgres => postgres(wire).await,
        Dialect::Ldap => ldap(wire).await,
        Dialect::Xmpp => xmpp(wire, names).await,
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
            wire.ldap_extended(ldap::WHO_AM_I, 2, "WhoAmI").await?;
            wire.send(ldap::UNBIND_AFTER_WHO_AM_I).await
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

/// SMTP (RFC 3207): greeting, EHLO, STARTTLS; after TLS, EHLO again and QUIT.
async fn smtp<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<'_, S>,
    names: &Names,
) -> Result<(), Failure> {
    let greeting = wire.reply("the greeting").await?;
    if let Err(failure) = greeting.expect(220, "the greeting") {
        // A server that refuses us (554) still waits for QUIT (RFC 5321 3.1); one that is
        // closing (421) does not.
        if greeting.code == 421 {
            return Err(failure);
        }
        return wire.goodbye("QUIT\r\n", failure).await;
    }
    wire.send(format!("EHLO {}\r\n", names.client)).await?;
    let ehlo = wire.reply("the EHLO answer").await?;
    if let Err(failure) = ehlo.expect(250, "EHLO") {
        return wire.goodbye("QUIT\r\n", failure).await;
    }
    let offered = ehlo.lines.iter().skip(1).any(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case("STARTTLS"))
    });
    if !offered {
        let failure = unsupported("the EHLO answer does not offer STARTTLS");
        return wire.goodbye("QUIT\r\n", failure).await;
    }
    upgrade_or_quit(wire, "STARTTLS", 220).await
}

/// SMTP's STARTTLS and FTP's AUTH TLS: the command, then its go-ahead `code`, or a refusal
/// after which the session ends with QUIT.
async fn upgrade_or_quit<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<'_, S>,
    command: &str,
    code: u16,
) -> Result<(), Failure> {
    wire.send(format!("{command}\r\n")).await?;
    let go = wire.reply(&format!("the {command} answer")).await?;
    if go.code == code {
        return Ok(());
    }
    let failure = unsupported(format!("{command} was answered {}", go.quote()));
    wire.goodbye("QUIT\r\n", failure).await
}

/// IMAP (RFC 3501 6.2.1): greeting, STARTTLS; after TLS, LOGOUT.
async fn imap<S: AsyncRead + AsyncWrite + Unpin>(wire: &mut Wire<'_, S>) -> Result<(), Failure> {
    let greeting = wire.line("the greeting").await?;
    let status = greeting.split_whitespace().nth(1).unwrap_or_default();
    if !greeting.starts_with("* ") || !status.eq_ignore_ascii_case("OK") {
        if status.eq_ignore_ascii_case("PREAUTH") {
            // STARTTLS is only valid before authentication.
            let failure = unsupported(format!(
                "the server authenticated us at once, where STARTTLS is not allowed: {}",
                quote(greeting.as_bytes())
            ));
            return wire.goodbye("v1 LOGOUT\r\n", failure).await;
        }
        return Err(mismatch(format!(
            "the greeting is not \"* OK\": {}",
            quote(greeting.as_bytes())
        )));
    }
    wire.send("v1 STARTTLS\r\n").await?;
    let go = wire.tagged("v1", "the STARTTLS answer").await?;
    if let Err(refused) = imap_ok(&go, "STARTTLS") {
        let failure = unsupported(refused.detail);
        return wire.goodbye("v2 LOGOUT\r\n", failure).await;
    }
    Ok(())
}

fn imap_ok(tagged: &str, command: &str) -> Result<(), Failure> {
    let status = tagged.split_whitespace().nth(1).unwrap_or_default();
    if status.eq_ignore_ascii_case("OK") {
        Ok(())
    } else {
        Err(mismatch(format!(
            "{command} was answered {}",
            quote(tagged.as_bytes())
        )))
    }
}

/// POP3 (RFC 2595 4): greeting, STLS; after TLS, QUIT.
async fn pop3<S: AsyncRead + AsyncWrite + Unpin>(wire: &mut Wire<'_, S>) -> Result<(), Failure> {
    let greeting = wire.line("the greeting").await?;
    pop3_ok(&greeting, "the greeting")?;
    wire.send("STLS\r\n").await?;
    let go = wire.line("the STLS answer").await?;
    if let Err(refused) = pop3_ok(&go, "STLS") {
        let failure = unsupported(refused.detail);
        return wire.goodbye("QUIT\r\n", failure).await;
    }
    Ok(())
}

fn pop3_ok(line: &str, what: &str) -> Result<(), Failure> {
    if line == "+OK" || line.starts_with("+OK ") {
        Ok(())
    } else {
        Err(mismatch(format!(
            "{what} was answered {}",
            quote(line.as_bytes())
        )))
    }
}

/// FTP (RFC 4217): greeting, AUTH TLS; after TLS, QUIT.
async fn ftp<S: AsyncRead + AsyncWrite + Unpin>(wire: &mut Wire<'_, S>) -> Result<(), Failure> {
    let mut greeting = wire.reply("the greeting").await?;
    // "120 ready in nnn minutes" may come first (RFC 959 4.2); the byte and time bounds of the
    // dialogue bound how many.
    while (100..200).contains(&greeting.code) {
        greeting = wire.reply("the greeting").await?;
    }
    greeting.expect(220, "the greeting")?;
    upgrade_or_quit(wire, "AUTH TLS", 234).await
}

/// PostgreSQL: SSLRequest, answered by one byte, 'S' to go ahead or 'N' when TLS is off.
async fn postgres<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<'_, S>,
) -> Result<(), Failure> {
    /// Length 8, then the SSLRequest code 1234.5679.
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    wire.send(SSL_REQUEST).await?;
    let answer = wire.take(1, "the SSLRequest answer").await?;
    match answer[0] {
        b'S' => Ok(()),
        b'N' => Err(unsupported(
            "the server answered the SSLRequest with N: TLS is off",
        )),
        other => Err(mismatch(format!(
            "the SSLRequest was answered with byte {other:#04x}, not S or N"
        ))),
    }
}

/// LDAP (RFC 4511 4.14): the StartTLS extended operation; after TLS, a WhoAmI (RFC 4532) to
/// see the session work, then an UnbindRequest.
async fn ldap<S: AsyncRead + AsyncWrite + Unpin>(wire: &mut Wire<'_, S>) -> Result<(), Failure> {
    let response = wire.ldap_extended(ldap::START_TLS, 1, "StartTLS").await?;
    if response.result_code != 0 {
        let failure = unsupported(format!("StartTLS was answered {response}"));
        return wire.goodbye(ldap::UNBIND, failure).await;
    }
    Ok(())
}

/// XMPP (RFC 6120 5.4): stream header, features offering starttls, starttls, proceed; after
/// TLS, a new stream whose features show the session works, then the stream's close.
async fn xmpp<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<'_, S>,
    names: &Names,
) -> Result<(), Failure> {
    wire.send(xmpp::open(&names.domain)).await?;
    let features = wire.xmpp_features("the stream features").await?;
    if let Err(failure) = xmpp::no_error(&features) {
        return wire.goodbye(xmpp::CLOSE, failure).await;
    }
    if !features.contains(xmpp::TLS_NAMESPACE) {
        // Best effort: the refusal is the story, whatever the stream's close meets.
        let _ = wire.xmpp_close().await;
        return Err(unsupported("the stream features do not offer starttls"));
    }
    wire.send(xmpp::STARTTLS).await?;
    let answer = wire
        .until(&xmpp::ANSWER_ENDS, "the answer to starttls")
        .await?;
    if answer.contains("<proceed") {
        return Ok(());
    }
    let failure = if answer.contains("<failure") {
        unsupported(format!(
            "starttls was answered {}",
            quote(answer.as_bytes())
        ))
    } else {
        xmpp::no_error(&answer).err().unwrap_or_else(|| {
            mismatch(format!(
                "starttls was answered neither proceed nor failure: {}",
                quote(answer.as_bytes())
            ))
        })
    };
    // The server closes its stream after a failure or an error; we close ours (RFC 6120 4.4).
    wire.goodbye(xmpp::CLOSE, failure).await
}

mod xmpp {
    use super::{Failure, mismatch, quote};

    pub const TLS_NAMESPACE: &str = "urn:ietf:params:xml:ns:xmpp-tls";
    pub const STARTTLS: &str = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
    pub const CLOSE: &str = "</stream:stream>";
    /// Where the features end: closed, empty, or replaced by a stream error or the stream's end.
    pub const FEATURES_END: [&str; 5] = [
        "</stream:features>",
        "<stream:features/>",
        "<stream:features />",
        "</stream:error>",
        CLOSE,
    ];
    /// Where the answer to starttls ends (`<proceed .../>`, `<failure .../>`) or what ends
    /// the stream instead.
    pub const ANSWER_ENDS: [&str; 5] = ["/>", "</proceed>", "</failure>", "</stream:error>", CLOSE];

    pub fn open(domain: &str) -> String {
        format!(
            "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' \
             xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        )
    }

    /// A stream error (an unknown domain, say) as a failure that names its condition.
    pub fn no_error(received: &str) -> Result<(), Failure> {
        match received.find("<stream:error") {
            None => Ok(()),
            Some(at) => Err(mismatch(format!(
                "the server ended the stream with an error: {}",
                quote(&received.as_bytes()[at..])
            ))),
        }
    }
}

mod ldap {
    use std::fmt;

    /// LDAPMessage { messageID 1, ExtendedRequest { requestName 1.3.6.1.4.1.1466.20037 } }.
    pub const START_TLS: &[u8] = b"\x30\x1d\x02\x01\x01\x77\x18\x80\x161.3.6.1.4.1.1466.20037";

    /// LDAPMessage { messageID 2, UnbindRequest }.
    pub const UNBIND: &[u8] = b"\x30\x05\x02\x01\x02\x42\x00";

    /// LDAPMessage { messageID 2, ExtendedRequest { requestName 1.3.6.1.4.1.4203.1.11.3 } }.
    pub const WHO_AM_I: &[u8] = b"\x30\x1e\x02\x01\x02\x77\x19\x80\x171.3.6.1.4.1.4203.1.11.3";

    /// LDAPMessage { messageID 3, UnbindRequest }.
    pub const UNBIND_AFTER_WHO_AM_I: &[u8] = b"\x30\x05\x02\x01\x03\x42\x00";

    #[derive(Debug, PartialEq, Eq)]
    pub struct ExtendedResponse {
        pub message_id: u32,
        pub result_code: u32,
        pub diagnostic: String,
    }

    impl fmt::Display for ExtendedResponse {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "resultCode {}", self.result_code)?;
            if let Some(name) = result_name(self.result_code) {
                write!(f, " ({name})")?;
            }
            if !self.diagnostic.is_empty() {
                write!(f, ": {:?}", self.diagnostic)?;
            }
            Ok(())
        }
    }

    /// The names of the result codes a StartTLS answer is likely to carry (RFC 4511 4.1.9).
    fn result_name(code: u32) -> Option<&'static str> {
        Some(match code {
            0 => "success",
            1 => "operationsError",
            2 => "protocolError",
            12 => "unavailableCriticalExtension",
            13 => "confidentialityRequired",
            51 => "busy",
            52 => "unavailable",
            53 => "unwillingToPerform",
            80 => "other",
            _ => return None,
        })
    }

    /// One BER element: its tag, its content, and what follows it. Definite lengths only, as
    /// LDAP requires (RFC 4511 5.1).
    pub fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (length, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, rest) = rest.split_at(count);
            let length = bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
            (length, rest)
        };
        (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
    }

    fn unsigned(content: &[u8]) -> Option<u32> {
        if content.is_empty() || content.len() > 4 {
            return None;
        }
        Some(content.iter().fold(0u32, |n, &b| (n << 8) | u32::from(b)))
    }

    /// The content of an LDAPMessage (after its SEQUENCE header) holding an ExtendedResponse.
    /// On error, what is missing or wrong.
    pub fn parse_extended_response(message: &[u8]) -> Result<ExtendedResponse, &'static str> {
        let (tag, id, rest) = element(message).ok_or("no message ID")?;
        let message_id = match (tag, unsigned(id)) {
            (0x02, Some(id)) => id,
            _ => return Err("no message ID"),
        };
        let (tag, op, _) = element(rest).ok_or("no operation")?;
        if tag != 0x78 {
            return Err("the operation is not an ExtendedResponse");
        }
        let (tag, code, op) = element(op).ok_or("no result code")?;
        let result_code = match (tag, unsigned(code)) {
            (0x0a, Some(code)) => code,
            _ => return Err("no result code"),
        };
        match element(op) {
            Some((0x04, _matched_dn, op)) => match element(op) {
                Some((0x04, diagnostic, _)) => Ok(ExtendedResponse {
                    message_id,
                    result_code,
                    diagnostic: String::from_utf8_lossy(diagnostic).into_owned(),
                }),
                _ => Err("no diagnostic message"),
            },
            _ => Err("no matched DN"),
        }
    }
}

/// An SMTP or FTP reply: its code and the text of each line.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn expect(&self, code: u16, what: &str) -> Result<(), Failure> {
        if self.code == code {
            Ok(())
        } else {
            Err(mismatch(format!("{what} was answered {}", self.quote())))
        }
    }

    fn quote(&self) -> String {
        let first = self.lines.first().map(String::as_str).unwrap_or_default();
        quote(format!("{} {first}", self.code).as_bytes())
    }
}

/// The three-digit code that starts an SMTP or FTP reply line, and whether more lines follow.
fn reply_code(line: &str) -> Option<(u16, bool)> {
    let digits = line.get(..3)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let more = match line.as_bytes().get(3) {
        None | Some(b' ') => false,
        Some(b'-') => true,
        Some(_) => return None,
    };
    Some((digits.parse().ok()?, more))
}

/// One side of a plaintext (or, for the farewell, TLS) dialogue: bounded reads of lines,
/// replies and elements, and every line said recorded in the run's events.
struct Wire<'t, S> {
    stream: S,
    /// Received and not yet consumed.
    pending: Vec<u8>,
    /// How much of `pending` is known to hold no line end (searches resume there, so a server
    /// that trickles bytes costs linear time).
    searched: usize,
    received: usize,
    deadline: Instant,
    trace: &'t mut Trace,
}

impl<'t, S: AsyncRead + AsyncWrite + Unpin> Wire<'t, S> {
    fn new(stream: S, deadline: Instant, trace: &'t mut Trace) -> Self {
        Wire {
            stream,
            pending: Vec::new(),
            searched: 0,
            received: 0,
            deadline,
            trace,
        }
    }

    async fn send(&mut self, bytes: impl AsRef<[u8]>) -> Result<(), Failure> {
        let bytes = bytes.as_ref();
        super::send(&mut self.stream, bytes, self.deadline).await?;
        self.trace.record(Event::Said {
            client: true,
            text: said(bytes),
        });
        Ok(())
    }

    /// Ends the plaintext session politely after a refusal: sends the dialect's goodbye (its
    /// answer is drained by the close) and returns the refusal.
    async fn goodbye(&mut self, bytes: impl AsRef<[u8]>, failure: Failure) -> Result<(), Failure> {
        // Best effort: the refusal is the story, whatever sending the goodbye meets.
        let _ = self.send(bytes).await;
        Err(failure)
    }

    fn heard(&mut self, text: String) {
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
    async fn line(&mut self, waiting_for: &str) -> Result<String, Failure> {
        let line = self.unrecorded_line(waiting_for).await?;
        self.heard(said(line.as_bytes()));
        Ok(line)
    }

    async fn unrecorded_line(&mut self, waiting_for: &str) -> Result<String, Failure> {
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

    /// An SMTP or FTP reply, single or multi-line. FTP's continuation lines may lack the code
    /// (RFC 959 4.2); the reply ends at the line that starts with the code and a space. The
    /// run's events keep its first line and how many followed.
    async fn reply(&mut self, waiting_for: &str) -> Result<Reply, Failure> {
        let first = self.unrecorded_line(waiting_for).await?;
        let reply = self.rest_of_reply(&first, waiting_for).await;
        let more = match &reply {
            Ok(reply) if reply.lines.len() > 1 => {
                format!(" and {} more lines", reply.lines.len() - 1)
            }
            _ => String::new(),
        };
        self.heard(format!("{}{more}", said(first.as_bytes())));
        reply
    }

    async fn rest_of_reply(&mut self, first: &str, waiting_for: &str) -> Result<Reply, Failure> {
        let Some((code, mut more)) = reply_code(first) else {
            return Err(mismatch(format!(
                "{waiting_for} is not a reply: {}",
                quote(first.as_bytes())
            )));
        };
        let text = |line: &str| line.get(4..).unwrap_or_default().to_string();
        let mut lines = vec![text(first)];
        while more {
            if lines.len() >= REPLY_LINES {
                return Err(mismatch(format!(
                    "{waiting_for} has more than {REPLY_LINES} lines"
                )));
            }
            let line = self.unrecorded_line(waiting_for).await?;
            match reply_code(&line) {
                Some((c, continues)) if c == code => {
                    more = continues;
                    lines.push(text(&line));
                }
                _ => lines.push(line),
            }
        }
        Ok(Reply { code, lines })
    }

    /// IMAP: skips untagged lines up to the one tagged `tag`, which it returns.
    /// The run's events keep the tagged line and how many untagged ones came before it.
    async fn tagged(&mut self, tag: &str, waiting_for: &str) -> Result<String, Failure> {
        let mut untagged = 0;
        loop {
            let line = self.unrecorded_line(waiting_for).await?;
            if line
                .strip_prefix(tag)
                .is_some_and(|rest| rest.starts_with(' '))
            {
                let before = match untagged {
                    0 => String::new(),
                    n => format!(" after {n} untagged lines"),
                };
                self.heard(format!("{}{before}", said(line.as_bytes())));
                return Ok(line);
            }
            untagged += 1;
        }
    }

    async fn take(&mut self, count: usize, waiting_for: &str) -> Result<Vec<u8>, Failure> {
        while self.pending.len() < count {
            self.fill(waiting_for).await?;
        }
        Ok(self.pending.drain(..count).collect())
    }

    /// Reads up to and through the first of `ends`, and returns that text.
    async fn until(&mut self, ends: &[&str], waiting_for: &str) -> Result<String, Failure> {
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

    async fn xmpp_features(&mut self, waiting_for: &str) -> Result<String, Failure> {
        self.until(&xmpp::FEATURES_END, waiting_for).await
    }

    /// Closes the stream and waits, as long as the close would, for the server to close its own
    /// (RFC 6120 4.4): closing the connection at once races the server, which may then log a
    /// lost connection. A server that keeps its stream open is left to the close.
    async fn xmpp_close(&mut self) -> Result<(), Failure> {
        self.send(xmpp::CLOSE).await?;
        let deadline = self.deadline;
        self.deadline = deadline.min(Instant::now() + CLOSE_GRACE);
        let _ = self
            .until(&[xmpp::CLOSE], "the server's end of the stream")
            .await;
        self.deadline = deadline;
        Ok(())
    }

    /// Sends an extended `request` with message ID `id` and reads its answer.
    async fn ldap_extended(
        &mut self,
        request: &[u8],
        id: u32,
        operation: &str,
    ) -> Result<ldap::ExtendedResponse, Failure> {
        self.send(request).await?;
        let waiting_for = format!("the answer to {operation}");
        let message = self.ldap_message(&waiting_for).await?;
        let response = ldap::parse_extended_response(&message)
            .map_err(|e| mismatch(format!("{waiting_for} is not LDAP: {e}")))?;
        self.heard(response.to_string());
        if response.message_id == 0 {
            // A notice of disconnection: the server is closing the session.
            return Err(mismatch(format!("the server disconnected: {response}")));
        }
        if response.message_id != id {
            return Err(mismatch(format!(
                "{waiting_for} has message ID {}",
                response.message_id
            )));
        }
        Ok(response)
    }

    /// One LDAPMessage: its content, after the SEQUENCE header.
    async fn ldap_message(&mut self, waiting_for: &str) -> Result<Vec<u8>, Failure> {
        let head = self.take(2, waiting_for).await?;
        if head[0] != 0x30 {
            return Err(mismatch(format!(
                "{waiting_for} is not LDAP: it starts with byte {:#04x}",
                head[0]
            )));
        }
        let length = if head[1] < 0x80 {
            u64::from(head[1])
        } else {
            let count = usize::from(head[1] & 0x7f);
            // Active Directory always writes lengths in four bytes.
            if count == 0 || count > 4 {
                return Err(mismatch(format!("{waiting_for} is not LDAP: a bad length")));
            }
            let bytes = self.take(count, waiting_for).await?;
            bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b))
        };
        match usize::try_from(length) {
            Ok(length) if length <= PLAINTEXT_LIMIT => self.take(length, waiting_for).await,
            _ => Err(mismatch(format!(
                "{waiting_for} claims {length} bytes, more than {PLAINTEXT_LIMIT}"
            ))),
        }
    }

    /// After the go-ahead: fails if the server sent anything more, which the TLS layer would
    /// otherwise take as the start of the handshake.
    fn nothing_pending(&self) -> Result<(), Failure> {
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

fn unsupported(detail: impl Into<String>) -> Failure {
    Failure::new(Reason::StarttlsUnsupported, detail)
}

fn mismatch(detail: impl Into<String>) -> Failure {
    Failure::new(Reason::ExpectMismatch, detail)
}

/// What a side said, as the run's events keep it: binary (PostgreSQL, LDAP) as a byte count,
/// text without its line end, escaped and cut.
fn said(bytes: &[u8]) -> String {
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
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Runs a negotiation against a peer that has queued `server_says` in full; returns the
    /// result (with the check for bytes after the go-ahead) and all the client sent.
    async fn negotiation(dialect: Dialect, server_says: &[u8]) -> (Result<(), Failure>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        server.write_all(server_says).await.unwrap();
        let names = Names {
            client: "[127.0.0.1]".to_string(),
            domain: "example.com".to_string(),
        };
        let mut trace = Trace::start();
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut wire = Wire::new(&mut client, deadline, &mut trace);
        let result = match negotiate(dialect, &mut wire, &names).await {
            Ok(()) => wire.nothing_pending(),
            Err(failure) => Err(failure),
        };
        drop(client);
        let mut sent = Vec::new();
        server.read_to_end(&mut sent).await.unwrap();
        (result, sent)
    }

    fn text(sent: &[u8]) -> String {
        String::from_utf8_lossy(sent).into_owned()
    }

    fn reason(result: &Result<(), Failure>) -> Option<Reason> {
        result.as_ref().err().map(|f| f.reason)
    }

    #[tokio::test]
    async fn smtp_refused_at_the_greeting_still_gets_quit_unless_the_server_is_closing() {
        let (result, sent) = negotiation(Dialect::Smtp, b"554 no service\r\n").await;
        assert_eq!(reason(&result), Some(Reason::ExpectMismatch));
        assert_eq!(text(&sent), "QUIT\r\n");
        let (result, sent) = negotiation(Dialect::Smtp, b"421 closing\r\n").await;
        assert_eq!(reason(&result), Some(Reason::ExpectMismatch));
        assert_eq!(text(&sent), "");
    }

    #[tokio::test]
    async fn smtp_reads_the_starttls_keyword_only_from_extension_lines() {
        // The first line of the EHLO answer is the server's name, not an extension.
        let script = b"220 mx\r\n250-STARTTLS greets [127.0.0.1]\r\n250 SIZE 1\r\n";
        let (result, sent) = negotiation(Dialect::Smtp, script).await;
        assert_eq!(reason(&result), Some(Reason::StarttlsUnsupported));
        assert_eq!(text(&sent), "EHLO [127.0.0.1]\r\nQUIT\r\n");
        let script = b"220 mx\r\n250-mx\r\n250 starttls\r\n220 go\r\n";
        let (result, sent) = negotiation(Dialect::Smtp, script).await;
        assert_eq!(result, Ok(()));
        assert_eq!(text(&sent), "EHLO [127.0.0.1]\r\nSTARTTLS\r\n");
    }

    #[tokio::test]
    async fn ftp_waits_past_preliminary_replies_and_reads_lines_without_codes() {
        let script =
            b"120 ready soon\r\n220-Welcome\r\n this line has no code\r\n220 ready\r\n234 go\r\n";
        let (result, sent) = negotiation(Dialect::Ftp, script).await;
        assert_eq!(result, Ok(()));
        assert_eq!(text(&sent), "AUTH TLS\r\n");
    }

    #[tokio::test]
    async fn imap_skips_untagged_lines_and_logs_out_with_a_new_tag_after_a_refusal() {
        let script = b"* OK hello\r\n* CAPABILITY IMAP4rev1\r\nv1 NO not now\r\n";
        let (result, sent) = negotiation(Dialect::Imap, script).await;
        assert_eq!(reason(&result), Some(Reason::StarttlsUnsupported));
        assert_eq!(text(&sent), "v1 STARTTLS\r\nv2 LOGOUT\r\n");
        let (result, sent) = negotiation(Dialect::Imap, b"* BYE busy\r\n").await;
        assert_eq!(reason(&result), Some(Reason::ExpectMismatch));
        assert_eq!(
            text(&sent),
            "",
            "nothing is said to a server that said goodbye"
        );
    }

    #[tokio::test]
    async fn bytes_with_the_go_ahead_are_refused() {
        let (result, _) = negotiation(Dialect::Imap, b"* OK\r\nv1 OK go\r\nv9 OK forged\r\n").await;
        let failure = result.unwrap_err();
        assert_eq!(failure.reason, Reason::ExpectMismatch);
        assert!(
            failure.detail.contains("14 bytes after its go-ahead"),
            "{}",
            failure.detail
        );
        let (result, _) = negotiation(Dialect::Postgres, b"SE").await;
        assert!(
            result
                .unwrap_err()
                .detail
                .contains("1 bytes after its go-ahead")
        );
    }

    #[tokio::test]
    async fn xmpp_closes_its_stream_after_a_failure_and_knows_empty_features() {
        let header = "<?xml version='1.0'?><stream:stream from='example.com' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
        let offer = "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>";
        let failure = "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>";
        let (result, sent) = negotiation(
            Dialect::Xmpp,
            format!("{header}{offer}{failure}").as_bytes(),
        )
        .await;
        assert_eq!(reason(&result), Some(Reason::StarttlsUnsupported));
        let sent = text(&sent);
        assert!(sent.contains("to='example.com'"), "{sent}");
        assert!(
            sent.ends_with(&format!("{}{}", xmpp::STARTTLS, xmpp::CLOSE)),
            "{sent}"
        );

        let empty = format!("{header}<stream:features />");
        let (result, sent) = negotiation(Dialect::Xmpp, empty.as_bytes()).await;
        assert_eq!(
            reason(&result),
            Some(Reason::StarttlsUnsupported),
            "not a timeout"
        );
        let sent = text(&sent);
        assert!(sent.ends_with(xmpp::CLOSE), "{sent}");
    }

    #[tokio::test]
    async fn ldap_takes_active_directory_four_byte_lengths() {
        // An answer in Active Directory's form, as testssl.sh's fix for it quotes one (not
        // captured here): every length in four bytes, a responseName after the diagnostic.
        let mut answer = b"\x30\x84\x00\x00\x00\x28\x02\x01\x01\x78\x84\x00\x00\x00\x1f\x0a\x01\x00\x04\x00\x04\x00\x8a\x16".to_vec();
        answer.extend_from_slice(b"1.3.6.1.4.1.1466.20037");
        let (result, sent) = negotiation(Dialect::Ldap, &answer).await;
        assert_eq!(result, Ok(()));
        assert_eq!(sent, ldap::START_TLS);
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

    #[test]
    fn reply_codes_mark_continuation() {
        assert_eq!(reply_code("250-mail.example.com"), Some((250, true)));
        assert_eq!(reply_code("250 STARTTLS"), Some((250, false)));
        assert_eq!(reply_code("221"), Some((221, false)));
        assert_eq!(reply_code("25O oops"), None);
        assert_eq!(reply_code("250_x"), None);
        assert_eq!(reply_code("* OK"), None);
    }

    #[test]
    fn the_start_tls_request_is_well_formed_ber() {
        let (tag, message, rest) = ldap::element(ldap::START_TLS).unwrap();
        assert_eq!((tag, rest.len()), (0x30, 0));
        let (tag, id, op) = ldap::element(message).unwrap();
        assert_eq!((tag, id), (0x02, &[1u8][..]));
        let (tag, request, rest) = ldap::element(op).unwrap();
        assert_eq!((tag, rest.len()), (0x77, 0));
        let (tag, name, rest) = ldap::element(request).unwrap();
        assert_eq!(
            (tag, name, rest.len()),
            (0x80, &b"1.3.6.1.4.1.1466.20037"[..], 0)
        );
    }

    #[test]
    fn the_who_am_i_request_is_well_formed_ber() {
        let (tag, message, rest) = ldap::element(ldap::WHO_AM_I).unwrap();
        assert_eq!((tag, rest.len()), (0x30, 0));
        let (tag, id, op) = ldap::element(message).unwrap();
        assert_eq!((tag, id), (0x02, &[2u8][..]));
        let (tag, request, _) = ldap::element(op).unwrap();
        assert_eq!(tag, 0x77);
        let (tag, name, rest) = ldap::element(request).unwrap();
        assert_eq!(
            (tag, name, rest.len()),
            (0x80, &b"1.3.6.1.4.1.4203.1.11.3"[..], 0)
        );
    }

    #[test]
    fn extended_responses_parse_with_short_and_long_lengths() {
        // messageID 1, ExtendedResponse { resultCode 52, matchedDN "", diagnosticMessage }.
        let diagnostic = b"Could not initialize TLS";
        let mut op = vec![0x0a, 0x01, 52, 0x04, 0x00, 0x04, diagnostic.len() as u8];
        op.extend_from_slice(diagnostic);
        let mut message = vec![0x02, 0x01, 0x01, 0x78, op.len() as u8];
        message.extend_from_slice(&op);
        let response = ldap::parse_extended_response(&message).unwrap();
        assert_eq!(
            response.to_string(),
            "resultCode 52 (unavailable): \"Could not initialize TLS\""
        );
        assert_eq!(response.message_id, 1);

        let mut long = vec![0x02, 0x01, 0x01, 0x78, 0x81, op.len() as u8];
        long.extend_from_slice(&op);
        assert_eq!(ldap::parse_extended_response(&long), Ok(response));
    }

    #[test]
    fn slapd_answers_as_captured_parse() {
        // Captured from slapd 2.5: StartTLS accepted, and refused by a server without TLS.
        let accepted = b"\x30\x0c\x02\x01\x01\x78\x07\x0a\x01\x00\x04\x00\x04\x00";
        let mut refused = b"\x30\x2a\x02\x01\x01\x78\x25\x0a\x01\x02\x04\x00\x04\x1e".to_vec();
        refused.extend_from_slice(b"unsupported extended operation");
        let content = |message: &[u8]| ldap::element(message).unwrap().1.to_vec();
        let ok = ldap::parse_extended_response(&content(accepted)).unwrap();
        assert_eq!((ok.message_id, ok.result_code), (1, 0));
        let no = ldap::parse_extended_response(&content(&refused)).unwrap();
        assert_eq!(
            no.to_string(),
            "resultCode 2 (protocolError): \"unsupported extended operation\""
        );
    }

    #[test]
    fn malformed_ldap_answers_are_errors_not_panics() {
        let cases: [&[u8]; 6] = [
            b"",
            b"\x02",
            b"\x02\x01",
            b"\x02\x01\x01\x61\x03\x0a\x01\x00",
            b"\x02\x01\x01\x78\x84\xff\xff\xff\xff",
            b"\x02\x01\x01\x78\x03\x0a\x01\x00",
        ];
        for case in cases {
            assert!(
                ldap::parse_extended_response(case).is_err(),
                "{case:02x?} parsed"
            );
        }
    }

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
