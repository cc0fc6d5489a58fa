//! blackbox_exporter's tcp families, for `/probe`. On `/metrics` a tcp target has only the
//! common families and the TLS ones, rendered over every type (`tls::metrics`).

use std::fmt;

use crate::exposition::Encoder;

use super::TcpFacts;
use crate::family::{UNLABELLED, gauge};
use crate::outcome::{Reason, Seen};

/// Whether the run failed on an `expect` (blackbox_exporter's `probe_failed_due_to_regex`),
/// and its TLS families once a handshake completed and was accepted: a handshake that failed,
/// or whose certificate failed verification, leaves Go's client nothing to report.
pub fn blackbox(
    encoder: &mut Encoder,
    run: Seen<'_, TcpFacts>,
    failure: Option<Reason>,
) -> fmt::Result {
    gauge(
        encoder,
        &[(UNLABELLED, ())],
        "probe_failed_due_to_regex",
        "1 if the run failed because a response did not match its expect",
        |_| Some(f64::from(u8::from(failure == Some(Reason::ExpectMismatch)))),
    )?;
    let refused = failure.is_some_and(|r| crate::tls::REASONS.contains(r));
    match run.facts.and_then(|f| f.tls.as_ref()) {
        Some(tls) if tls.version.is_some() && !refused => {
            crate::tls::metrics::blackbox(encoder, tls)
        }
        _ => Ok(()),
    }
}
