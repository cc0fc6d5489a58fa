//! The dns probe's families: how many records each section held, the zone's serial, and the
//! response code; and blackbox_exporter's, for `/probe`.

use std::fmt;
use std::time::Duration;

use crate::exposition::Encoder;
use prometheus_client::metrics::MetricType;

use super::DnsFacts;
use crate::family::{Row, UNLABELLED, gauge, info, series};
use crate::net::dns::rcode_name;
use crate::outcome::Seen;

/// Renders the dns families over `rows`, one per target with a run, in their fixed order.
pub fn families(encoder: &mut Encoder, rows: &[Row<'_, Seen<'_, DnsFacts>>]) -> fmt::Result {
    gauge(
        encoder,
        rows,
        "probe_dns_answer_rrs",
        "Records in the answer section of the last dns run",
        |s| s.facts.map(|f| f.answers.len() as f64),
    )?;
    gauge(
        encoder,
        rows,
        "probe_dns_authority_rrs",
        "Records in the authority section of the last dns run",
        |s| s.facts.map(|f| f.authority_records as f64),
    )?;
    gauge(
        encoder,
        rows,
        "probe_dns_additional_rrs",
        "Records in the additional section of the last dns run, the EDNS OPT record included",
        |s| s.facts.map(|f| f.additional_records as f64),
    )?;
    gauge(
        encoder,
        rows,
        "probe_dns_serial",
        "The zone's serial from the SOA record in the last dns run's answer",
        |s| Some(f64::from(s.facts?.serial?)),
    )?;
    info(
        encoder,
        rows,
        "probe_dns_rcode",
        "The response code of the last dns run (NOERROR, NXDOMAIN, SERVFAIL, ...)",
        |s| match s.facts {
            Some(f) => vec![vec![("rcode", rcode_name(f.rcode))]],
            None => Vec::new(),
        },
    )
}

/// blackbox_exporter's dns families for one run, as its `/probe` answers them: always the
/// phases and the section counts (0 without an answer), the serial when the answer holds an
/// SOA record. The server is an address, so `resolve` is 0: no lookup happens; `connect` is 0
/// over UDP, which connects nothing.
pub fn blackbox(encoder: &mut Encoder, run: Seen<'_, DnsFacts>) -> fmt::Result {
    let rows = [(UNLABELLED, run)];
    let facts = run.facts;
    let connect = facts.and_then(|f| f.connected).unwrap_or_default();
    let request = facts.map_or(Duration::ZERO, |f| f.took.saturating_sub(connect));
    series(
        encoder,
        &rows,
        "probe_dns_duration_seconds",
        "Duration of the DNS exchange by phase",
        MetricType::Gauge,
        |_| {
            [
                ("resolve", 0.0),
                ("connect", connect.as_secs_f64()),
                ("request", request.as_secs_f64()),
            ]
            .into_iter()
            .map(|(phase, v)| (vec![("phase", phase.to_string())], v))
            .collect()
        },
    )?;
    let count = |pick: fn(&DnsFacts) -> usize| Some(facts.map_or(0.0, |f| pick(f) as f64));
    gauge(
        encoder,
        &rows,
        "probe_dns_answer_rrs",
        "Records in the answer section",
        |_| count(|f| f.answers.len()),
    )?;
    gauge(
        encoder,
        &rows,
        "probe_dns_authority_rrs",
        "Records in the authority section",
        |_| count(|f| f.authority_records),
    )?;
    gauge(
        encoder,
        &rows,
        "probe_dns_additional_rrs",
        "Records in the additional section",
        |_| count(|f| f.additional_records),
    )?;
    gauge(
        encoder,
        &rows,
        "probe_dns_query_succeeded",
        "1 if the server answered the question",
        |_| Some(f64::from(u8::from(facts.is_some()))),
    )?;
    gauge(
        encoder,
        &rows,
        "probe_dns_serial",
        "The zone's SOA serial",
        |_| Some(f64::from(facts?.serial?)),
    )
}
