//! The HTTP families: the last answer's status and version, time to first byte, redirects.

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;

use super::HttpFacts;
use crate::family::{Row, gauge};
use crate::outcome::Seen;

/// Renders the HTTP families over `rows`, one per target with a run, in their fixed order.
/// Time to first byte is read from the trace of every row, whatever its type, as it always was.
pub fn families(
    encoder: &mut DescriptorEncoder,
    rows: &[Row<'_, Seen<'_, HttpFacts>>],
) -> fmt::Result {
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
            s.facts.and_then(|h| h.version()).and_then(|v| match v {
                ::http::Version::HTTP_10 => Some(1.0),
                ::http::Version::HTTP_11 => Some(1.1),
                ::http::Version::HTTP_2 => Some(2.0),
                _ => None,
            })
        },
    )?;
    gauge(
        encoder,
        rows,
        "probe_http_first_byte_duration_seconds",
        "From the request sent to the first byte of the answer, summed over redirects",
        |s| s.trace.phases.first_byte.map(|d| d.as_secs_f64()),
    )?;
    gauge(
        encoder,
        rows,
        "probe_http_redirects",
        "Redirects followed in the last run",
        |s| s.facts.map(|h| h.redirects() as f64),
    )
}
