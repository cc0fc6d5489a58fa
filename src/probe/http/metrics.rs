//! The HTTP families: the last answer's status, version, lengths and Last-Modified, time to
//! first byte and transfer, redirects; and blackbox_exporter's, for `/probe`.

use std::fmt;

use crate::exposition::Encoder;

use std::time::Duration;

use prometheus_client::metrics::MetricType;

use super::{Hop, HttpFacts, Scheme};
use crate::family::{Row, UNLABELLED, gauge, series};
use crate::outcome::{Reason, Seen};

/// Renders the HTTP families over `rows`, one per target with a run, in their fixed order.
/// Time to first byte is read from the trace of every row, whatever its type, as it always was.
pub fn families(encoder: &mut Encoder, rows: &[Row<'_, Seen<'_, HttpFacts>>]) -> fmt::Result {
    gauge(
        encoder,
        rows,
        "probe_http_status_code",
        "Status of the last answer, after redirects",
        |s| s.facts.and_then(|h| h.status()).map(f64::from),
    )?;
    gauge(
        encoder,
        rows,
        "probe_http_version",
        "HTTP version of the last answer: 1.0, 1.1 or 2",
        |s| {
            s.facts
                .and_then(|h| h.version())
                .map(version_number)
                .filter(|&v| v > 0.0)
        },
    )?;
    gauge(
        encoder,
        rows,
        "probe_http_first_byte_duration_seconds",
        "From the request sent to the first byte of the answer, summed over redirects",
        |s| s.trace.phases.first_byte.get().map(|d| d.as_secs_f64()),
    )?;
    gauge(
        encoder,
        rows,
        "probe_http_redirects",
        "Redirects followed in the last run",
        |s| s.facts.map(|h| h.redirects() as f64),
    )?;
    // Facts of the last answer that vantage's other names do not carry; blackbox_exporter's
    // names where it has them. Absent when there was no answer (or it did not say).
    fn answer<'a>(s: &Seen<'a, HttpFacts>) -> Option<&'a Hop> {
        s.facts?.hops.last().filter(|h| h.status.is_some())
    }
    // blackbox's phases beside vantage's own names, which dashboards and rules written for
    // blackbox read: each phase that happened, summed over redirects (transfer: the final
    // answer's).
    series(
        encoder,
        rows,
        "probe_http_duration_seconds",
        "Duration of the last run's HTTP request by phase (resolve, connect, tls, processing, transfer), as blackbox_exporter names them; a phase that did not happen is absent",
        MetricType::Gauge,
        |s| {
            // Only http targets: the rows are every target's, with facts for http ones.
            if s.facts.is_none() {
                return Vec::new();
            }
            let phases = &s.trace.phases;
            [
                ("resolve", phases.dns.get()),
                ("connect", phases.connect.get()),
                ("tls", phases.tls.get()),
                ("processing", phases.first_byte.get()),
                ("transfer", answer(s).and_then(|h| h.transfer)),
            ]
            .into_iter()
            .filter_map(|(phase, d)| Some((vec![("phase", phase.to_string())], d?.as_secs_f64())))
            .collect()
        },
    )?;
    gauge(
        encoder,
        rows,
        "probe_http_content_length",
        "The last answer's Content-Length; absent when it declares none",
        |s| Some(answer(s)?.content_length? as f64),
    )?;
    gauge(
        encoder,
        rows,
        "probe_http_uncompressed_body_length",
        "Body bytes of the last answer, as read (the read stops past body_size_limit)",
        |s| Some(answer(s)?.body_bytes as f64),
    )?;
    gauge(
        encoder,
        rows,
        "probe_http_ssl",
        "1 if the last answer came over TLS, 0 if not",
        |s| Some(f64::from(u8::from(answer(s)?.url.scheme == Scheme::Https))),
    )?;
    gauge(
        encoder,
        rows,
        "probe_http_last_modified_timestamp_seconds",
        "The last answer's Last-Modified, as a Unix timestamp",
        |s| Some(answer(s)?.last_modified? as f64),
    )
}

/// An HTTP version as a number: 1.0, 1.1 or 2; 0 for one vantage does not speak.
fn version_number(version: ::http::Version) -> f64 {
    match version {
        ::http::Version::HTTP_10 => 1.0,
        ::http::Version::HTTP_11 => 1.1,
        ::http::Version::HTTP_2 => 2.0,
        _ => 0.0,
    }
}

/// blackbox_exporter's http families for one run, as its `/probe` answers them. Those it
/// always answers are always here: where no answer came, with its values for "none" (status
/// 0, lengths 0, phases that did not happen at 0); the phases other than `resolve` only once
/// the host was found, and the TLS families only when the final answer came over TLS.
pub fn blackbox(
    encoder: &mut Encoder,
    run: Seen<'_, HttpFacts>,
    failure: Option<Reason>,
) -> fmt::Result {
    let rows = [(UNLABELLED, run)];
    let last = run.facts.and_then(|h| h.hops.last());
    let answered = last.filter(|hop| hop.status.is_some());
    let found = run.facts.and_then(|h| h.hops.first()?.address).is_some();
    let phases = &run.trace.phases;
    let secs = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64());
    series(
        encoder,
        &rows,
        "probe_http_duration_seconds",
        "Duration of the HTTP request by phase, summed over redirects (transfer: the final answer's)",
        MetricType::Gauge,
        |_| {
            let mut by_phase = vec![("resolve", secs(phases.dns.get()))];
            if found {
                by_phase.extend([
                    ("connect", secs(phases.connect.get())),
                    ("tls", secs(phases.tls.get())),
                    ("processing", secs(phases.first_byte.get())),
                    ("transfer", secs(last.and_then(|h| h.transfer))),
                ]);
            }
            by_phase
                .into_iter()
                .map(|(phase, v)| (vec![("phase", phase.to_string())], v))
                .collect()
        },
    )?;
    let over_tls = answered.is_some_and(|h| h.url.scheme == Scheme::Https);
    let values = [
        (
            "probe_http_content_length",
            "The final answer's Content-Length; -1 when it declares none",
            answered.map_or(0.0, |h| h.content_length.map_or(-1.0, |n| n as f64)),
        ),
        (
            "probe_http_uncompressed_body_length",
            "Body bytes of the final answer, as read",
            answered.map_or(0.0, |h| h.body_bytes as f64),
        ),
        (
            "probe_http_redirects",
            "Redirects followed",
            run.facts.map_or(0.0, |h| h.redirects() as f64),
        ),
        (
            "probe_http_ssl",
            "1 if the final answer came over TLS",
            f64::from(u8::from(over_tls)),
        ),
        (
            "probe_http_status_code",
            "Status of the final answer; 0 without one",
            answered.and_then(|h| h.status).map_or(0.0, f64::from),
        ),
        (
            "probe_http_version",
            "HTTP version of the final answer; 0 without one",
            answered.and_then(|h| h.version).map_or(0.0, version_number),
        ),
        (
            "probe_failed_due_to_regex",
            "1 if the run failed on body_regex or body_not_regex",
            f64::from(u8::from(failure == Some(Reason::HttpBodyMismatch))),
        ),
    ];
    for (name, help, value) in values {
        gauge(encoder, &rows, name, help, |_| Some(value))?;
    }
    gauge(
        encoder,
        &rows,
        "probe_http_last_modified_timestamp_seconds",
        "The final answer's Last-Modified, as a Unix timestamp; absent without one",
        |_| Some(answered?.last_modified? as f64),
    )?;
    match run.facts.and_then(|h| h.tls.as_ref()) {
        Some(tls) if over_tls => crate::tls::metrics::blackbox(encoder, tls),
        _ => Ok(()),
    }
}
