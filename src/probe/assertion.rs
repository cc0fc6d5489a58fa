//! Assertions: conditions a target adds to its check (SPEC §3 `assertions`). Each one that an
//! attempt could judge is reported as `probe_assertion_success{assertion}`; the first that fails
//! fails a run that had otherwise succeeded, with the most specific reason that fits.

use std::time::{Duration, SystemTime};

use crate::duration::{self, timing};
use crate::outcome::{Failure, Judged, Outcome, Reason, Trace};
use crate::tls::expiry::expiry_check;
use crate::tls::{TlsFacts, TlsVersion};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assertion {
    /// The TCP connection must succeed, or (`status: failure`) must not: a firewall check.
    Connection {
        succeeds: bool,
    },
    /// The check (connect, handshake, dialogue; not the polite close) must finish this fast.
    ResponseTime {
        less_than: Duration,
    },
    /// The earliest expiry of the presented chain must be further away than this.
    CertificateExpiry {
        greater_than: Duration,
    },
    TlsVersion {
        one_of: Vec<TlsVersion>,
    },
}

impl Assertion {
    /// The `assertion` label, which is also its `type` in the config.
    pub fn name(&self) -> &'static str {
        match self {
            Assertion::Connection { .. } => "connection",
            Assertion::ResponseTime { .. } => "response_time",
            Assertion::CertificateExpiry { .. } => "certificate_expiry",
            Assertion::TlsVersion { .. } => "tls_version",
        }
    }

    /// `None` when the attempt did not get far enough to judge (no certificate arrived, say).
    fn judge(
        &self,
        result: &Result<(), Failure>,
        trace: &Trace,
        tls: Option<&TlsFacts>,
        now: SystemTime,
    ) -> Option<Result<(), Failure>> {
        match self {
            Assertion::Connection { succeeds: true } => Some(match trace.phases.connect.get() {
                Some(_) => Ok(()),
                None => Err(Failure::new(
                    Reason::AssertionFailed,
                    "the connection was expected to succeed",
                )),
            }),
            Assertion::Connection { succeeds: false } => {
                let address = trace.address?;
                if trace.phases.connect.get().is_some() {
                    return Some(Err(Failure::new(
                        Reason::AssertionFailed,
                        format!("connected to {address}, but the connection was expected to fail"),
                    )));
                }
                // Only the network's answer counts; a name that did not resolve or a failure on
                // our side (out of file descriptors, say) tested nothing.
                let blocked = result.as_ref().err().is_some_and(|f| {
                    matches!(
                        f.reason,
                        Reason::ConnectionRefused
                            | Reason::ConnectionTimeout
                            | Reason::NetworkUnreachable
                            | Reason::HostUnreachable
                            | Reason::PermissionDenied
                    )
                });
                blocked.then_some(Ok(()))
            }
            Assertion::ResponseTime { less_than } => {
                result.as_ref().ok()?;
                let answered = trace.answered?;
                Some(if answered < *less_than {
                    Ok(())
                } else {
                    Err(Failure::new(
                        Reason::AssertionFailed,
                        format!(
                            "answered in {}, not under {}",
                            timing(answered),
                            duration::format(*less_than)
                        ),
                    ))
                })
            }
            Assertion::CertificateExpiry { greater_than } => {
                let facts = tls.filter(|f| !f.chain.is_empty())?;
                Some(expiry_check(
                    facts,
                    now,
                    *greater_than,
                    "the certificate_expiry assertion's",
                ))
            }
            Assertion::TlsVersion { one_of } => {
                let version = tls?.version?;
                Some(if one_of.contains(&version) {
                    Ok(())
                } else {
                    let allowed: Vec<&str> = one_of.iter().map(|v| v.as_str()).collect();
                    Err(Failure::new(
                        Reason::TlsProtocolVersion,
                        format!(
                            "negotiated {version}, which is not one of {}",
                            allowed.join(", ")
                        ),
                    ))
                })
            }
        }
    }
}

/// Judges `outcome` by every assertion and records the verdicts in it. A run that failed keeps
/// its own, more specific reason, except that a connection expected to fail may fail.
/// `tls` picks the attempt's TLS facts out of its probe type's facts.
pub fn judge<F>(
    assertions: &[Assertion],
    outcome: &mut Outcome<F>,
    tls: fn(&F) -> Option<&TlsFacts>,
    now: SystemTime,
) {
    let tls = tls(&outcome.facts);
    let mut first_failure = None;
    for assertion in assertions {
        let Some(verdict) = assertion.judge(&outcome.result, &outcome.trace, tls, now) else {
            continue;
        };
        outcome.assertions.push(Judged {
            assertion: assertion.name(),
            held: verdict.is_ok(),
        });
        if let Err(failure) = verdict {
            first_failure.get_or_insert(failure);
        }
    }
    let refusal_expected = outcome
        .assertions
        .iter()
        .any(|j| j.assertion == "connection" && j.held)
        && assertions.contains(&Assertion::Connection { succeeds: false });
    if refusal_expected {
        outcome.result = Ok(());
    }
    if outcome.result.is_ok()
        && let Some(failure) = first_failure
    {
        outcome.result = Err(failure);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected(answered_ms: u64) -> Outcome<()> {
        let mut trace = Trace::start();
        trace.address = Some("127.0.0.1:1".parse().unwrap());
        trace.phases.connect = Duration::from_millis(1).into();
        trace.answered = Some(Duration::from_millis(answered_ms));
        Outcome::new(Ok(()), trace)
    }

    fn refused() -> Outcome<()> {
        let mut trace = Trace::start();
        trace.address = Some("127.0.0.1:1".parse().unwrap());
        Outcome::new(
            Err(Failure::new(Reason::ConnectionRefused, "refused")),
            trace,
        )
    }

    #[test]
    fn a_slow_answer_fails_the_response_time_assertion() {
        let mut outcome = connected(700);
        let assertions = [Assertion::ResponseTime {
            less_than: Duration::from_millis(500),
        }];
        judge(&assertions, &mut outcome, |_| None, SystemTime::now());
        assert_eq!(outcome.result.unwrap_err().reason, Reason::AssertionFailed);
        assert_eq!(
            outcome.assertions,
            [Judged {
                assertion: "response_time",
                held: false
            }]
        );
    }

    #[test]
    fn an_expected_refusal_is_a_success_and_a_connection_is_a_failure() {
        let firewall = [Assertion::Connection { succeeds: false }];
        let mut blocked = refused();
        judge(&firewall, &mut blocked, |_| None, SystemTime::now());
        assert!(blocked.result.is_ok());
        let mut open = connected(1);
        judge(&firewall, &mut open, |_| None, SystemTime::now());
        assert_eq!(open.result.unwrap_err().reason, Reason::AssertionFailed);
    }

    #[test]
    fn a_local_failure_does_not_pass_for_a_blocked_connection() {
        let mut outcome = refused();
        outcome.result = Err(Failure::new(Reason::IoError, "Too many open files"));
        judge(
            &[Assertion::Connection { succeeds: false }],
            &mut outcome,
            |_| None,
            SystemTime::now(),
        );
        assert_eq!(outcome.result.unwrap_err().reason, Reason::IoError);
        assert!(outcome.assertions.is_empty(), "nothing was tested");
    }

    #[test]
    fn a_failed_run_keeps_its_own_reason_and_unjudgeable_assertions_are_left_out() {
        let assertions = [
            Assertion::Connection { succeeds: true },
            Assertion::ResponseTime {
                less_than: Duration::from_millis(500),
            },
            Assertion::TlsVersion {
                one_of: vec![TlsVersion::Tls13],
            },
        ];
        let mut outcome = refused();
        judge(&assertions, &mut outcome, |_| None, SystemTime::now());
        assert_eq!(
            outcome.result.unwrap_err().reason,
            Reason::ConnectionRefused
        );
        assert_eq!(
            outcome.assertions,
            [Judged {
                assertion: "connection",
                held: false
            }]
        );
    }
}
