//! What every probe shares: the run (attempts and retries under one deadline), its outcome
//! (phase timings, a transcript, a typed failure) and the stable failure reasons.
//!
//! A probe type is a module with a validated config struct and
//! `async fn attempt(&self, deadline) -> Outcome`; [`Probe`] has one arm per type.

pub mod assertion;
pub mod dns;
pub mod http;
pub mod icmp;
pub mod report;
pub mod starttls;
pub mod tcp;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, sleep, timeout_at};

use crate::tls::TlsFacts;
pub use assertion::{Assertion, Judged};

/// A configured check, ready to run.
#[derive(Debug, Clone)]
pub enum Probe {
    Tcp(tcp::TcpProbe),
    Http(Box<http::HttpProbe>),
    Dns(Box<dns::DnsProbe>),
    Icmp(icmp::IcmpProbe),
}

impl Probe {
    /// The `probe` label.
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Tcp(_) => "tcp",
            Probe::Http(_) => "http",
            Probe::Dns(_) => "dns",
            Probe::Icmp(_) => "icmp",
        }
    }

    /// The `target` label: what is probed, as the user would write it.
    pub fn target(&self) -> String {
        match self {
            Probe::Tcp(p) => p.host.with_port(p.port),
            Probe::Http(p) => p.written.clone(),
            Probe::Dns(p) => p.written.clone(),
            Probe::Icmp(p) => p.host.to_string(),
        }
    }

    pub async fn attempt(&self, deadline: Instant) -> Outcome {
        match self {
            Probe::Tcp(p) => p.attempt(deadline).await,
            Probe::Http(p) => p.attempt(deadline).await,
            Probe::Dns(p) => p.attempt(deadline).await,
            Probe::Icmp(p) => p.attempt(deadline).await,
        }
    }
}

/// Why a run failed. The strings are a stable contract: alerts and dashboards match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    DnsError,
    ConnectionRefused,
    ConnectionTimeout,
    ConnectionReset,
    NetworkUnreachable,
    HostUnreachable,
    /// The run's deadline passed after the connection was up (a silent peer, a slow dialogue).
    Timeout,
    /// The server accepted TCP but did not finish the TLS handshake in time.
    TlsHandshakeTimeout,
    TlsCertExpired,
    TlsCertNotYetValid,
    TlsHostnameMismatch,
    /// The chain does not lead to a trusted root: self-signed, unknown CA, missing intermediate.
    TlsUnknownIssuer,
    /// A certificate problem that is none of the above: wrong key usage, bad encoding, an
    /// unsupported signature algorithm.
    TlsCertInvalid,
    /// No protocol version both sides accept.
    TlsProtocolVersion,
    /// The server ended the handshake with an alert (for example: a client certificate is
    /// required).
    TlsAlert,
    /// The handshake failed otherwise, for example because the peer does not speak TLS.
    TlsHandshakeFailed,
    /// The chain expires within `alert_before_expiry` or a `certificate_expiry` assertion.
    TlsCertExpiring,
    /// The server did not offer STARTTLS, or refused it.
    StarttlsUnsupported,
    ExpectMismatch,
    /// No echo request was answered.
    IcmpNoReply,
    /// More echoes were lost than `max_loss_ratio` allows.
    IcmpPacketLoss,
    /// A DNS answer with a valid response code but not the records expected.
    DnsUnexpectedAnswer,
    /// The last answer's status is not a valid one (redirect loops end here too).
    HttpStatus,
    /// `body_regex` did not match, or `body_not_regex` did.
    HttpBodyMismatch,
    AssertionFailed,
    PermissionDenied,
    IoError,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::DnsError => "dns_error",
            Reason::ConnectionRefused => "connection_refused",
            Reason::ConnectionTimeout => "connection_timeout",
            Reason::ConnectionReset => "connection_reset",
            Reason::NetworkUnreachable => "network_unreachable",
            Reason::HostUnreachable => "host_unreachable",
            Reason::Timeout => "timeout",
            Reason::TlsHandshakeTimeout => "tls_handshake_timeout",
            Reason::TlsCertExpired => "tls_cert_expired",
            Reason::TlsCertNotYetValid => "tls_cert_not_yet_valid",
            Reason::TlsHostnameMismatch => "tls_hostname_mismatch",
            Reason::TlsUnknownIssuer => "tls_unknown_issuer",
            Reason::TlsCertInvalid => "tls_cert_invalid",
            Reason::TlsProtocolVersion => "tls_protocol_version",
            Reason::TlsAlert => "tls_alert",
            Reason::TlsHandshakeFailed => "tls_handshake_failed",
            Reason::TlsCertExpiring => "tls_cert_expiring",
            Reason::StarttlsUnsupported => "starttls_unsupported",
            Reason::ExpectMismatch => "expect_mismatch",
            Reason::DnsUnexpectedAnswer => "dns_unexpected_answer",
            Reason::IcmpNoReply => "icmp_no_reply",
            Reason::IcmpPacketLoss => "icmp_packet_loss",
            Reason::HttpStatus => "http_status",
            Reason::HttpBodyMismatch => "http_body_mismatch",
            Reason::AssertionFailed => "assertion_failed",
            Reason::PermissionDenied => "permission_denied",
            Reason::IoError => "io_error",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed attempt: the stable reason for labels, and the human detail for logs and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    /// Index of the dialogue step that failed, when the failure happened in one.
    pub step: Option<usize>,
    pub detail: String,
}

impl Failure {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Failure {
            reason,
            step: None,
            detail: detail.into(),
        }
    }

    /// A socket or TLS error, classified by kind; `doing` says what the probe was doing.
    pub fn io(err: &std::io::Error, doing: &str) -> Self {
        match crate::tls::rustls_error(err) {
            Some(tls) => Failure::new(
                crate::tls::reason(tls),
                format!("{doing}: {}", crate::tls::describe(tls)),
            ),
            None => Failure::new(crate::net::classify(err), format!("{doing}: {err}")),
        }
    }

    pub fn at_step(mut self, step: usize) -> Self {
        self.step = Some(step);
        self
    }
}

/// How many bytes failures and reports quote of what a peer sent.
pub const QUOTE_LIMIT: usize = 120;

/// Bytes as failures and reports quote them: in double quotes, escaped, cut after
/// [`QUOTE_LIMIT`] bytes with "..." after.
pub fn quote(bytes: &[u8]) -> String {
    let kept = String::from_utf8_lossy(&bytes[..bytes.len().min(QUOTE_LIMIT)]);
    let more = if bytes.len() > QUOTE_LIMIT { "..." } else { "" };
    format!("\"{}\"{more}", kept.escape_debug())
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason)?;
        if let Some(step) = self.step {
            write!(f, " at step {step}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// How long each phase of an attempt took; `None` when the phase did not happen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    pub dns: Option<Duration>,
    pub connect: Option<Duration>,
    /// The plaintext STARTTLS negotiation, from the connection being up to the go-ahead.
    pub starttls: Option<Duration>,
    /// A completed TLS handshake.
    pub tls: Option<Duration>,
    /// HTTP: from the request sent to the first byte of the answer.
    pub first_byte: Option<Duration>,
}

impl Phases {
    /// Both phase sets added up, phase by phase: the phases of a run that took several
    /// connections (HTTP redirects). A phase is absent only when it is absent in both.
    pub fn plus(&self, other: &Phases) -> Phases {
        let add = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        Phases {
            dns: add(self.dns, other.dns),
            connect: add(self.connect, other.connect),
            starttls: add(self.starttls, other.starttls),
            tls: add(self.tls, other.tls),
            first_byte: add(self.first_byte, other.first_byte),
        }
    }
}

/// Something that happened in an attempt, for the human report and debug logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Sent {
        step: usize,
        bytes: usize,
    },
    Matched {
        step: usize,
        bytes: usize,
    },
    Held {
        peer_closed: bool,
    },
    /// A line (or for binary protocols, a message) of a STARTTLS dialogue, quoted.
    Said {
        client: bool,
        text: String,
    },
    Closed {
        how: Close,
        discarded: usize,
    },
}

/// How the gentle close ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The peer answered our FIN with its own: a clean close.
    PeerClosed,
    /// The peer had not closed when the grace period (or the deadline) ran out; our FIN stands.
    GraceOver,
    /// The peer kept sending past the drain limit; dropping the socket then resets it.
    DrainLimit,
}

/// An event and when it happened, measured from the start of the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timed<T> {
    pub at: Duration,
    pub what: T,
}

/// What an attempt observed, whether it succeeded or not.
#[derive(Debug, Clone)]
pub struct Trace {
    started: Instant,
    pub phases: Phases,
    pub address: Option<SocketAddr>,
    pub events: Vec<Timed<Event>>,
    /// What the TLS handshake revealed, for targets with TLS that got that far; for HTTP, the
    /// last https hop's.
    pub tls: Option<TlsFacts>,
    /// The requests and answers of an HTTP probe.
    pub http: Option<http::HttpFacts>,
    /// The answer of a dns probe.
    pub dns: Option<dns::DnsFacts>,
    /// The echoes of an icmp probe.
    pub icmp: Option<icmp::IcmpFacts>,
    /// When the check itself was done (connected, handshaken, dialogue answered), before the
    /// polite close: the response time that `response_time` assertions judge.
    pub answered: Option<Duration>,
}

impl Trace {
    pub fn start() -> Self {
        Trace {
            started: Instant::now(),
            phases: Phases::default(),
            address: None,
            events: Vec::new(),
            tls: None,
            http: None,
            dns: None,
            icmp: None,
            answered: None,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn record(&mut self, what: Event) {
        self.events.push(Timed {
            at: self.started.elapsed(),
            what,
        });
    }
}

/// One attempt's result and everything it observed.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: Result<(), Failure>,
    pub trace: Trace,
    /// The configured assertions this attempt could judge, in config order.
    pub assertions: Vec<Judged>,
}

impl Outcome {
    pub fn new(result: Result<(), Failure>, trace: Trace) -> Self {
        Outcome {
            result,
            trace,
            assertions: Vec::new(),
        }
    }
}

/// How a run is bounded and retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunPolicy {
    pub timeout: Duration,
    pub retries: u32,
    pub retry_delay: Duration,
}

/// A completed run: the last attempt's outcome, and how much it took to get there.
#[derive(Debug, Clone)]
pub struct Run {
    pub outcome: Outcome,
    pub attempts: u32,
    pub duration: Duration,
    pub finished_at: SystemTime,
}

impl Run {
    pub fn success(&self) -> bool {
        self.outcome.result.is_ok()
    }

    pub fn failure(&self) -> Option<&Failure> {
        self.outcome.result.as_ref().err()
    }
}

/// Runs `probe` once under `policy` and judges every attempt by `assertions`: the code path of
/// both the scheduler and `vantage probe`.
pub async fn run(probe: &Probe, assertions: &[Assertion], policy: &RunPolicy) -> Run {
    run_attempts(policy, |deadline| async move {
        let mut outcome = probe.attempt(deadline).await;
        assertion::judge(assertions, &mut outcome, SystemTime::now());
        outcome
    })
    .await
}

/// Attempts until one succeeds, the retries are used up, or the next retry would start after the
/// run's deadline. Every attempt shares that one deadline, so a run never outlasts `timeout`.
pub async fn run_attempts<F, Fut>(policy: &RunPolicy, mut attempt: F) -> Run
where
    F: FnMut(Instant) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let started = Instant::now();
    let deadline = started + policy.timeout;
    let mut attempts = 0;
    let outcome = loop {
        attempts += 1;
        // Probes honour the deadline themselves and keep their trace; this is the backstop.
        let outcome = timeout_at(deadline, attempt(deadline))
            .await
            .unwrap_or_else(|_| {
                Outcome::new(
                    Err(Failure::new(
                        Reason::Timeout,
                        "the attempt did not finish before the deadline",
                    )),
                    Trace::start(),
                )
            });
        let retry_fits = Instant::now() + policy.retry_delay < deadline;
        if outcome.result.is_ok() || attempts > policy.retries || !retry_fits {
            break outcome;
        }
        sleep(policy.retry_delay).await;
    };
    Run {
        outcome,
        attempts,
        duration: started.elapsed(),
        finished_at: SystemTime::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn policy(timeout: u64, retries: u32, retry_delay: u64) -> RunPolicy {
        RunPolicy {
            timeout: Duration::from_secs(timeout),
            retries,
            retry_delay: Duration::from_secs(retry_delay),
        }
    }

    fn outcome(result: Result<(), Failure>) -> Outcome {
        Outcome::new(result, Trace::start())
    }

    fn refused() -> Result<(), Failure> {
        Err(Failure::new(Reason::ConnectionRefused, "refused"))
    }

    #[tokio::test(start_paused = true)]
    async fn success_on_first_attempt_uses_one() {
        let run = run_attempts(&policy(10, 2, 1), |_| async { outcome(Ok(())) }).await;
        assert!(run.success());
        assert_eq!(run.attempts, 1);
        assert_eq!(run.duration, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_after_retry_delay_until_success() {
        let calls = Cell::new(0);
        let run = run_attempts(&policy(10, 3, 1), |_| {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { outcome(if n < 3 { refused() } else { Ok(()) }) }
        })
        .await;
        assert!(run.success());
        assert_eq!(run.attempts, 3);
        assert_eq!(run.duration, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_when_retries_are_used_up_and_keeps_the_last_reason() {
        let run = run_attempts(&policy(10, 2, 1), |_| async { outcome(refused()) }).await;
        assert_eq!(run.attempts, 3);
        assert_eq!(run.failure().unwrap().reason, Reason::ConnectionRefused);
        assert_eq!(run.duration, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_attempt_ends_at_the_deadline() {
        let run = run_attempts(&policy(5, 3, 1), |_| std::future::pending::<Outcome>()).await;
        assert_eq!(run.attempts, 1, "no time is left for a retry");
        assert_eq!(run.failure().unwrap().reason, Reason::Timeout);
        assert_eq!(run.duration, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_starts_at_or_after_the_deadline() {
        // The attempt fails after 2s and the retry delay is 1s: a retry would start exactly at
        // the 3s deadline, so the run ends with the real reason instead of a truncated retry.
        let run = run_attempts(&policy(3, 5, 1), |_| async {
            sleep(Duration::from_secs(2)).await;
            outcome(refused())
        })
        .await;
        assert_eq!(run.attempts, 1);
        assert_eq!(run.failure().unwrap().reason, Reason::ConnectionRefused);
        assert_eq!(run.duration, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn every_attempt_gets_the_same_run_deadline() {
        let start = Instant::now();
        let seen = std::cell::RefCell::new(Vec::new());
        run_attempts(&policy(10, 2, 1), |deadline| {
            seen.borrow_mut().push(deadline);
            async { outcome(refused()) }
        })
        .await;
        assert_eq!(*seen.borrow(), vec![start + Duration::from_secs(10); 3]);
    }

    #[test]
    fn reason_strings_are_the_documented_ones() {
        let all = [
            (Reason::DnsError, "dns_error"),
            (Reason::ConnectionRefused, "connection_refused"),
            (Reason::ConnectionTimeout, "connection_timeout"),
            (Reason::ConnectionReset, "connection_reset"),
            (Reason::NetworkUnreachable, "network_unreachable"),
            (Reason::HostUnreachable, "host_unreachable"),
            (Reason::Timeout, "timeout"),
            (Reason::TlsHandshakeTimeout, "tls_handshake_timeout"),
            (Reason::TlsCertExpired, "tls_cert_expired"),
            (Reason::TlsCertNotYetValid, "tls_cert_not_yet_valid"),
            (Reason::TlsHostnameMismatch, "tls_hostname_mismatch"),
            (Reason::TlsUnknownIssuer, "tls_unknown_issuer"),
            (Reason::TlsCertInvalid, "tls_cert_invalid"),
            (Reason::TlsProtocolVersion, "tls_protocol_version"),
            (Reason::TlsAlert, "tls_alert"),
            (Reason::TlsHandshakeFailed, "tls_handshake_failed"),
            (Reason::TlsCertExpiring, "tls_cert_expiring"),
            (Reason::ExpectMismatch, "expect_mismatch"),
            (Reason::DnsUnexpectedAnswer, "dns_unexpected_answer"),
            (Reason::IcmpNoReply, "icmp_no_reply"),
            (Reason::IcmpPacketLoss, "icmp_packet_loss"),
            (Reason::HttpStatus, "http_status"),
            (Reason::HttpBodyMismatch, "http_body_mismatch"),
            (Reason::AssertionFailed, "assertion_failed"),
            (Reason::PermissionDenied, "permission_denied"),
            (Reason::IoError, "io_error"),
        ];
        for (reason, text) in all {
            assert_eq!(reason.as_str(), text);
        }
    }
}
