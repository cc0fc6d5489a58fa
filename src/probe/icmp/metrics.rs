//! The icmp probe's families: round-trip statistics, loss and the reply's hop limit; and
//! blackbox_exporter's, for `/probe`.

use std::fmt;

use crate::exposition::Encoder;
use prometheus_client::metrics::MetricType;

use super::IcmpFacts;
use crate::family::{Row, UNLABELLED, gauge, series};
use crate::outcome::Seen;

/// Renders the icmp families over `rows`, one per target with a run, in their fixed order.
pub fn families(encoder: &mut Encoder, rows: &[Row<'_, Seen<'_, IcmpFacts>>]) -> fmt::Result {
    series(
        encoder,
        rows,
        "probe_icmp_rtt_seconds",
        "Echo round trips of the last icmp run: min, avg, max and stddev; absent without replies",
        MetricType::Gauge,
        |s| match s.facts.and_then(IcmpFacts::stats) {
            Some(stats) => ["min", "avg", "max", "stddev"]
                .into_iter()
                .zip(stats)
                .map(|(stat, value)| (vec![("stat", stat.to_string())], value))
                .collect(),
            None => Vec::new(),
        },
    )?;
    gauge(
        encoder,
        rows,
        "probe_icmp_packet_loss_ratio",
        "Share of the last icmp run's echo requests that got no reply, 0 to 1",
        |s| s.facts.map(IcmpFacts::loss_ratio),
    )?;
    hop_limit(encoder, rows)
}

/// blackbox_exporter's icmp families for one run, as its `/probe` answers them: the phases
/// always (0 for one that did not happen), the reply's hop limit when its IP header was seen.
/// blackbox sends one echo; `rtt` here is the mean round trip of the echoes answered.
pub fn blackbox(encoder: &mut Encoder, run: Seen<'_, IcmpFacts>) -> fmt::Result {
    let rows = [(UNLABELLED, run)];
    let resolve = run.trace.phases.dns.get().map_or(0.0, |d| d.as_secs_f64());
    let setup = run.facts.map_or(0.0, |f| f.setup.as_secs_f64());
    let rtt = run
        .facts
        .and_then(IcmpFacts::stats)
        .map_or(0.0, |[_, avg, ..]| avg);
    series(
        encoder,
        &rows,
        "probe_icmp_duration_seconds",
        "Duration of the icmp run by phase",
        MetricType::Gauge,
        |_| {
            [("resolve", resolve), ("setup", setup), ("rtt", rtt)]
                .into_iter()
                .map(|(phase, v)| (vec![("phase", phase.to_string())], v))
                .collect()
        },
    )?;
    hop_limit(encoder, &rows)
}

/// The TTL of the first reply, when its IP header was seen (raw IPv4 sockets only).
fn hop_limit(encoder: &mut Encoder, rows: &[Row<'_, Seen<'_, IcmpFacts>>]) -> fmt::Result {
    gauge(
        encoder,
        rows,
        "probe_icmp_reply_hop_limit",
        "TTL of the first echo reply, as its IP header says; absent over ping sockets and IPv6",
        |s| Some(f64::from(s.facts?.hop_limit?)),
    )
}
