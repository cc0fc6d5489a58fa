//! Outcomes: what an attempt observed and how it ended (phase timings, a transcript, a typed
//! failure with one of the stable reasons), and the run that retries attempts under one
//! deadline.
//!
//! This is the leaf of the crate: it imports nothing of ours, so that sockets, TLS, every probe
//! type and every output can speak of outcomes without depending on each other.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, sleep, timeout_at};

mod phases;

pub use phases::{Phase, Phases};

/// Defines [`Reason`] and its strings from one list, so that [`Reason::ALL`] and `as_str`
/// cannot miss a variant.
macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident => $text:literal,)*) => {
        /// Why a run failed. The strings are a stable contract: alerts and dashboards match on
        /// them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &[Reason] = &[$(Reason::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $text,)*
                }
            }
        }
    };
}

reasons! {
    DnsError => "dns_error",
    ConnectionRefused => "connection_refused",
    ConnectionTimeout => "connection_timeout",
    ConnectionReset => "connection_reset",
    NetworkUnreachable => "network_unreachable",
    HostUnreachable => "host_unreachable",
    /// The run's deadline passed after the connection was up (a silent peer, a slow dialogue).
    Timeout => "timeout",
    /// The server accepted TCP but did not finish the TLS handshake in time.
    TlsHandshakeTimeout => "tls_handshake_timeout",
    TlsCertExpired => "tls_cert_expired",
    TlsCertNotYetValid => "tls_cert_not_yet_valid",
    TlsHostnameMismatch => "tls_hostname_mismatch",
    /// The chain does not lead to a trusted root: self-signed, unknown CA, missing intermediate.
    TlsUnknownIssuer => "tls_unknown_issuer",
    /// A certificate problem that is none of the above: wrong key usage, bad encoding, an
    /// unsupported signature algorithm.
    TlsCertInvalid => "tls_cert_invalid",
    /// No protocol version both sides accept.
    TlsProtocolVersion => "tls_protocol_version",
    /// The server ended the handshake with an alert (for example: a client certificate is
    /// required).
    TlsAlert => "tls_alert",
    /// The handshake failed otherwise, for example because the peer does not speak TLS.
    TlsHandshakeFailed => "tls_handshake_failed",
    /// The chain expires within a `certificate_expiry` assertion's bound.
    TlsCertExpiring => "tls_cert_expiring",
    /// The server did not offer STARTTLS, or refused it.
    StarttlsUnsupported => "starttls_unsupported",
    ExpectMismatch => "expect_mismatch",
    /// No echo request was answered.
    IcmpNoReply => "icmp_no_reply",
    /// More echoes were lost than `max_loss_ratio` allows.
    IcmpPacketLoss => "icmp_packet_loss",
    /// A DNS answer with a valid response code but not the records expected.
    DnsUnexpectedAnswer => "dns_unexpected_answer",
    /// The last answer's status is not a valid one (redirect loops end here too).
    HttpStatus => "http_status",
    /// `body_regex` did not match, or `body_not_regex` did.
    HttpBodyMismatch => "http_body_mismatch",
    AssertionFailed => "assertion_failed",
    PermissionDenied => "permission_denied",
    IoError => "io_error",
}

/// A set of reasons, one bit each: what a target can produce, checked at every scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReasonSet(u64);

impl ReasonSet {
    pub const fn of(reasons: &[Reason]) -> ReasonSet {
        let mut bits = 0;
        let mut i = 0;
        while i < reasons.len() {
            bits |= 1 << reasons[i] as u64;
            i += 1;
        }
        ReasonSet(bits)
    }

    pub const fn union(self, other: ReasonSet) -> ReasonSet {
        ReasonSet(self.0 | other.0)
    }

    pub const fn contains(self, reason: Reason) -> bool {
        self.0 & (1 << reason as u64) != 0
    }

    /// The reasons in the set, in [`Reason::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Reason> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            let reason = Reason::ALL.get(bits.trailing_zeros() as usize)?;
            bits &= bits - 1;
            Some(*reason)
        })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed attempt: the stable reason for labels, and the human detail for logs and reports.
///
/// Boxed, so that a result (`Result<(), Failure>`) is one pointer: every target's latest run
/// keeps one, and most of them succeeded. Its fields are read and written through the box.
#[derive(Clone, PartialEq, Eq)]
pub struct Failure(Box<Failed>);

/// What a [`Failure`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub reason: Reason,
    /// Index of the dialogue step that failed, when the failure happened in one.
    pub step: Option<usize>,
    pub detail: String,
}

impl std::ops::Deref for Failure {
    type Target = Failed;

    fn deref(&self) -> &Failed {
        &self.0
    }
}

impl std::ops::DerefMut for Failure {
    fn deref_mut(&mut self) -> &mut Failed {
        &mut self.0
    }
}

// By hand: as the fields it shows, not as a box of another type.
impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("reason", &self.reason)
            .field("step", &self.step)
            .field("detail", &self.detail)
            .finish()
    }
}

impl Failure {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Failure(Box::new(Failed {
            reason,
            step: None,
            detail: detail.into(),
        }))
    }

    /// The human detail alone, for a failure that becomes another's.
    pub fn into_detail(self) -> String {
        self.0.detail
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

/// What every attempt observes, whether it succeeded or not; what only one probe type observes
/// (a TLS chain, HTTP hops, DNS records, echoes) is that type's facts, beside the trace.
#[derive(Debug, Clone)]
pub struct Trace {
    started: Instant,
    pub phases: Phases,
    pub address: Option<SocketAddr>,
    pub events: Vec<Timed<Event>>,
    /// When the check itself was done (connected, handshaken, dialogue answered), before the
    /// polite close: the response time that `response_time` assertions judge.
    pub answered: Option<Duration>,
    /// How long the attempt waited by design between its own packets (the spacing of an icmp
    /// run's echoes), or with `addresses: all` for the turns of its addresses: our choice, not
    /// the network's, so the run's duration leaves it out.
    pub paused: Duration,
}

impl Trace {
    pub fn start() -> Self {
        Trace {
            started: Instant::now(),
            phases: Phases::default(),
            address: None,
            events: Vec::new(),
            answered: None,
            paused: Duration::ZERO,
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

/// One attempt's result and everything it observed: the common trace, and `F`, the facts of
/// its probe type.
#[derive(Debug, Clone)]
pub struct Outcome<F> {
    pub result: Result<(), Failure>,
    pub trace: Trace,
    pub facts: F,
    /// The configured assertions this attempt could judge, in config order.
    pub assertions: Vec<Judged>,
    /// With `addresses: all`, every address's own outcome in resolution order; this outcome is
    /// then the one the target shows (the first failing address's, else the first's). Empty
    /// when the attempt probed one address.
    pub addresses: Vec<Probed<F>>,
}

/// One address's outcome in an attempt that probed every resolved address.
#[derive(Debug, Clone)]
pub struct Probed<F> {
    pub address: IpAddr,
    pub outcome: Outcome<F>,
    /// How long probing this address took.
    pub took: Duration,
}

impl<F> Outcome<F> {
    pub fn with_facts(result: Result<(), Failure>, trace: Trace, facts: F) -> Self {
        Outcome {
            result,
            trace,
            facts,
            assertions: Vec::new(),
            addresses: Vec::new(),
        }
    }

    /// Drops the events of this outcome and of its addresses'. They are for the run's own
    /// report (`vantage probe`, `/probe?debug=true`); the latest run kept for every target
    /// would otherwise hold a few hundred bytes of them each that nothing reads.
    pub fn forget_events(&mut self) {
        self.trace.events = Vec::new();
        for probed in &mut self.addresses {
            probed.outcome.forget_events();
        }
    }

    /// The same outcome with its facts turned into `G`: how a probe type's outcome becomes
    /// the registry's.
    pub fn map_facts<G>(self, mut f: impl FnMut(F) -> G) -> Outcome<G> {
        self.map_with(&mut f)
    }

    // Through `dyn`: the nested outcomes would otherwise instantiate this without end.
    fn map_with<G>(self, f: &mut dyn FnMut(F) -> G) -> Outcome<G> {
        let addresses = self
            .addresses
            .into_iter()
            .map(|p| Probed {
                address: p.address,
                outcome: p.outcome.map_with(f),
                took: p.took,
            })
            .collect();
        Outcome {
            result: self.result,
            trace: self.trace,
            facts: f(self.facts),
            assertions: self.assertions,
            addresses,
        }
    }
}

impl<F: Default> Outcome<F> {
    /// An outcome that observed no facts of its type.
    pub fn new(result: Result<(), Failure>, trace: Trace) -> Self {
        Outcome::with_facts(result, trace, F::default())
    }
}

/// An assertion's verdict in one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judged {
    pub assertion: &'static str,
    pub held: bool,
}

/// How a run is bounded and retried, and which addresses it probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunPolicy {
    pub timeout: Duration,
    pub retries: u32,
    pub retry_delay: Duration,
    pub addresses: Addresses,
}

/// Which of a host's resolved addresses a run probes (the `addresses` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Addresses {
    /// One address, as `ip_version` picks it: one connection per run, as a client makes.
    #[default]
    First,
    /// Every resolved address of the allowed families, each a full attempt of its own.
    All,
}

/// A completed run: the last attempt's outcome, and how much it took to get there.
#[derive(Debug, Clone)]
pub struct Run<F> {
    pub outcome: Outcome<F>,
    pub attempts: u32,
    pub duration: Duration,
    pub finished_at: SystemTime,
}

impl<F> Run<F> {
    pub fn success(&self) -> bool {
        self.outcome.result.is_ok()
    }

    pub fn failure(&self) -> Option<&Failure> {
        self.outcome.result.as_ref().err()
    }

    /// This run as the outputs of one probe type see it, with the facts `pick` finds.
    pub fn seen<'a, G>(&'a self, pick: impl FnOnce(&'a F) -> Option<&'a G>) -> Seen<'a, G> {
        Seen {
            trace: &self.outcome.trace,
            finished_at: self.finished_at,
            facts: pick(&self.outcome.facts),
        }
    }
}

/// A run as a probe type's metric families and report lines read it: the common trace, when it
/// finished, and that type's facts if it has them. Those outputs take this rather than a
/// [`Run`] of the registry's facts so that they can live in the type's folder, below the
/// registry.
#[derive(Debug)]
pub struct Seen<'a, F> {
    pub trace: &'a Trace,
    pub finished_at: SystemTime,
    pub facts: Option<&'a F>,
}

// By hand: a derive would demand `F: Copy`, and only references to `F` are copied.
impl<F> Clone for Seen<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for Seen<'_, F> {}

/// Attempts until one succeeds, the retries are used up, or the next retry would start after the
/// run's deadline. Every attempt shares that one deadline, so a run never outlasts `timeout`.
pub async fn run_attempts<A, Fut, F>(policy: &RunPolicy, mut attempt: A) -> Run<F>
where
    A: FnMut(Instant) -> Fut,
    Fut: Future<Output = Outcome<F>>,
    F: Default,
{
    let started = Instant::now();
    let deadline = started + policy.timeout;
    let mut attempts = 0;
    let mut paused = Duration::ZERO;
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
        paused += outcome.trace.paused;
        let retry_fits = Instant::now() + policy.retry_delay < deadline;
        if outcome.result.is_ok() || attempts > policy.retries || !retry_fits {
            break outcome;
        }
        sleep(policy.retry_delay).await;
    };
    Run {
        outcome,
        attempts,
        duration: started.elapsed().saturating_sub(paused),
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
            addresses: Addresses::First,
        }
    }

    fn outcome(result: Result<(), Failure>) -> Outcome<()> {
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
        let run = run_attempts(&policy(5, 3, 1), |_| std::future::pending::<Outcome<()>>()).await;
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
    async fn pauses_by_design_are_left_out_of_the_duration_of_every_attempt() {
        // Two attempts of 3 s each, 2 s of which were spacing between our own packets, and the
        // 1 s retry delay: 3 - 2 + 1 + 3 - 2 = 3 s are the network's and the retry's.
        let run = run_attempts(&policy(10, 1, 1), |_| async {
            sleep(Duration::from_secs(3)).await;
            let mut trace = Trace::start();
            trace.paused = Duration::from_secs(2);
            Outcome::<()>::new(refused(), trace)
        })
        .await;
        assert_eq!(run.attempts, 2);
        assert_eq!(run.duration, Duration::from_secs(3));
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
    fn a_result_and_a_phase_are_one_word_each() {
        // Every target's latest run keeps a result and five phases: a failure boxed and a
        // phase in nanoseconds keep them small.
        assert_eq!(std::mem::size_of::<Result<(), Failure>>(), 8);
        assert_eq!(std::mem::size_of::<Phase>(), 8);
        let failure = Failure::new(Reason::Timeout, "slow").at_step(2);
        assert_eq!((failure.reason, failure.step), (Reason::Timeout, Some(2)));
        assert_eq!(failure.to_string(), "timeout at step 2: slow");
        assert_eq!(failure.into_detail(), "slow");
    }

    #[test]
    fn a_reason_set_holds_what_it_was_made_of_and_nothing_else() {
        let set = ReasonSet::of(&[Reason::DnsError, Reason::IoError])
            .union(ReasonSet::of(&[Reason::Timeout]));
        for reason in Reason::ALL {
            let expected = matches!(reason, Reason::DnsError | Reason::IoError | Reason::Timeout);
            assert_eq!(set.contains(*reason), expected, "{reason}");
        }
        assert!(Reason::ALL.len() <= 64, "a ReasonSet has 64 bits");
        let listed: Vec<Reason> = set.iter().collect();
        assert_eq!(listed, [Reason::DnsError, Reason::Timeout, Reason::IoError]);
        assert!(
            ReasonSet::of(Reason::ALL)
                .iter()
                .eq(Reason::ALL.iter().copied())
        );
        assert_eq!(ReasonSet::default().iter().count(), 0);
    }

    /// The README's table of failure reasons is the documentation users alert on: it must name
    /// every reason there is, and no other, each once.
    #[test]
    fn the_readme_lists_every_reason_exactly_once() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("\n## Failure reasons\n")
            .nth(1)
            .expect("README has a Failure reasons section");
        let section = section.split("\n## ").next().unwrap_or(section);
        let listed: Vec<&str> = section
            .lines()
            .filter_map(|line| line.strip_prefix("| `")?.split('`').next())
            .collect();
        let mut sorted = listed.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            listed.len(),
            "a reason is listed twice: {listed:?}"
        );
        let mut all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        all.sort_unstable();
        assert_eq!(sorted, all);
    }

    #[test]
    fn every_reason_is_listed_once_with_its_own_string() {
        let strings: std::collections::BTreeSet<&str> =
            Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(strings.len(), Reason::ALL.len());
        assert!(
            strings
                .iter()
                .all(|s| s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
    }
}
