//! The push's own metrics, in Prometheus' terms (`prometheus_remote_storage_*`), one series per
//! receiver, labelled `remote_name` and `url` as Prometheus labels its own.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::remote::Remote;
use crate::family::{self, Own};

fn counted(counter: &AtomicU64) -> f64 {
    counter.load(Ordering::Relaxed) as f64
}

fn seconds(ms: &AtomicU64) -> f64 {
    ms.load(Ordering::Relaxed) as f64 / 1000.0
}

const FAMILIES: [Own<Remote>; 9] = [
    (
        "vantage_remote_write_samples_in",
        "Samples queued for the receiver: runs' series, staleness markers and vantage's own metrics",
        MetricType::Counter,
        |r| counted(&r.stats.queued),
    ),
    (
        "vantage_remote_write_samples",
        "Samples the receiver accepted",
        MetricType::Counter,
        |r| counted(&r.stats.sent),
    ),
    (
        "vantage_remote_write_samples_failed",
        "Samples the receiver refused for good (an answer of 4xx other than 429), or that were not sent when vantage stopped",
        MetricType::Counter,
        |r| counted(&r.stats.failed),
    ),
    (
        "vantage_remote_write_samples_dropped",
        "Samples dropped from a full queue, oldest first, while the receiver was slow or away",
        MetricType::Counter,
        |r| counted(&r.stats.dropped),
    ),
    (
        "vantage_remote_write_samples_retried",
        "Samples sent again after a 5xx, a 429 or a network error",
        MetricType::Counter,
        |r| counted(&r.stats.retried),
    ),
    (
        "vantage_remote_write_samples_pending",
        "Samples waiting in the queue, the batch being sent included",
        MetricType::Gauge,
        |r| (r.queue.len() + r.in_flight.load(Ordering::Relaxed)) as f64,
    ),
    (
        "vantage_remote_write_queue_capacity_samples",
        "The queue's capacity (queue.capacity)",
        MetricType::Gauge,
        |r| r.queue.capacity() as f64,
    ),
    (
        "vantage_remote_write_last_send_timestamp_seconds",
        "When the receiver last accepted a batch, as a Unix timestamp; 0 before the first",
        MetricType::Gauge,
        |r| seconds(&r.stats.last_send_ms),
    ),
    (
        "vantage_remote_write_highest_sent_timestamp_seconds",
        "The newest sample time the receiver accepted, as a Unix timestamp: how far behind the push is",
        MetricType::Gauge,
        |r| seconds(&r.stats.highest_sent_ms),
    ),
];

/// Every family, a series for each of `remotes`; nothing while there are none.
pub fn encode(mut encoder: DescriptorEncoder, remotes: &[Arc<Remote>]) -> fmt::Result {
    let rows: Vec<([(&str, String); 2], &Remote)> = remotes
        .iter()
        .map(|r| {
            let s = r.settings();
            let labels = [
                ("remote_name", s.name.clone()),
                ("url", s.endpoint.shown_url.clone()),
            ];
            (labels, &**r)
        })
        .collect();
    family::own(&mut encoder, &FAMILIES, &rows)
}
