//! The icmp probe's families: round-trip statistics and loss.

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::IcmpFacts;
use crate::family::{Row, gauge, series};
use crate::outcome::Seen;

/// Renders the icmp families over `rows`, one per target with a run, in their fixed order.
pub fn families(
    encoder: &mut DescriptorEncoder,
    rows: &[Row<'_, Seen<'_, IcmpFacts>>],
) -> fmt::Result {
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
    )
}
