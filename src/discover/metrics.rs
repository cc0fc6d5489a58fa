//! The sources' own metrics, one series per source, labelled `source` (its name) and `type`
//! (`file` or `http`), in the manner of Prometheus' `prometheus_sd_*`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use crate::family::{self, Own};

/// One source's state, as `/metrics` shows it.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub kind: &'static str,
    /// The targets of the list in use.
    pub targets: usize,
    /// When the newest list was last read or fetched and found good.
    pub last_success: Option<SystemTime>,
    /// Polls that failed, and newest lists that had mistakes (each list once).
    pub failures: u64,
    /// Whether the last poll (for `http_sd`) and the last load of the newest list went well.
    pub fetch_ok: bool,
    pub list_ok: bool,
    /// Digest of the mistakes of the newest list, so that a list is counted failed once
    /// however many loads find it so.
    pub mistakes: Option<u64>,
}

const FAMILIES: [Own<Status>; 4] = [
    (
        "vantage_target_source_targets",
        "Targets in the source's list in use (its newest good one), before locations and shards pick this instance's",
        MetricType::Gauge,
        |s| s.targets as f64,
    ),
    (
        "vantage_target_source_last_refresh_successful",
        "Whether the source's newest list was read (or fetched) and built without a mistake (1) or not (0)",
        MetricType::Gauge,
        |s| f64::from(u8::from(s.fetch_ok && s.list_ok)),
    ),
    (
        "vantage_target_source_last_success_timestamp_seconds",
        "When the source's newest list was last read (or fetched) and found good, as a Unix timestamp; 0 before the first",
        MetricType::Gauge,
        |s| {
            s.last_success
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64())
        },
    ),
    (
        "vantage_target_source_failures",
        "Polls of the source that failed, and new lists of it that had mistakes",
        MetricType::Counter,
        |s| s.failures as f64,
    ),
];

/// Every family, a series for each source; nothing while there are none.
pub fn encode(mut encoder: DescriptorEncoder, sources: &BTreeMap<String, Status>) -> fmt::Result {
    let rows: Vec<([(&str, String); 2], &Status)> = sources
        .iter()
        .map(|(name, s)| ([("source", name.clone()), ("type", s.kind.to_string())], s))
        .collect();
    family::own(&mut encoder, &FAMILIES, &rows)
}
