//! Probe series, rendered at scrape time from the latest run of every target.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::store::{Entry, Store};

#[derive(Debug)]
pub struct ProbeCollector {
    store: Arc<Store>,
}

impl ProbeCollector {
    pub fn new(store: Arc<Store>) -> Self {
        ProbeCollector { store }
    }
}

type Labels<'a> = &'a [(String, String)];

impl Collector for ProbeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.store.read(|entries| {
            let entries: Vec<&Entry> = entries.values().collect();
            let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());

            gauge(
                &mut encoder,
                &entries,
                "probe_success",
                "1 if the last run succeeded and every assertion held, else 0",
                |e| e.last.as_ref().map(|r| if r.success() { 1.0 } else { 0.0 }),
            )?;
            gauge(
                &mut encoder,
                &entries,
                "probe_duration_seconds",
                "Duration of the last run, retries included",
                |e| e.last.as_ref().map(|r| r.duration.as_secs_f64()),
            )?;
            gauge(
                &mut encoder,
                &entries,
                "probe_attempts",
                "Attempts the last run used (1 + retries used)",
                |e| e.last.as_ref().map(|r| f64::from(r.attempts)),
            )?;
            gauge(
                &mut encoder,
                &entries,
                "probe_dns_lookup_duration_seconds",
                "Name resolution in the last run; absent for IP literals",
                |e| {
                    e.last
                        .as_ref()
                        .and_then(|r| secs(r.outcome.trace.phases.dns))
                },
            )?;
            gauge(
                &mut encoder,
                &entries,
                "probe_connect_duration_seconds",
                "TCP connect (SYN to established) in the last run",
                |e| {
                    e.last
                        .as_ref()
                        .and_then(|r| secs(r.outcome.trace.phases.connect))
                },
            )?;

            let mut info = encoder.encode_descriptor(
                "probe_failure",
                "Present while the last run failed: why, and for dialogues the failing step",
                None,
                MetricType::Info,
            )?;
            for entry in &entries {
                let Some(failure) = entry.last.as_ref().and_then(|r| r.failure()) else {
                    continue;
                };
                let labels: Labels = &entry.target.labels;
                match failure.step {
                    None => info.encode_info(&(labels, [("reason", failure.reason.as_str())]))?,
                    Some(step) => info.encode_info(&(
                        labels,
                        [
                            ("reason", failure.reason.as_str()),
                            ("step", &step.to_string()),
                        ],
                    ))?,
                }
            }

            counter(
                &mut encoder,
                &entries,
                "probe_runs",
                "Completed runs by result",
                "result",
                |e| vec![("success", e.successes), ("failure", e.failures)],
            )?;
            counter(
                &mut encoder,
                &entries,
                "probe_failures",
                "Failed runs by reason",
                "reason",
                |e| {
                    e.failures_by_reason
                        .iter()
                        .map(|(r, n)| (r.as_str(), *n))
                        .collect()
                },
            )?;
            Ok(())
        })
    }
}

/// One gauge family: a series for every entry that has a value.
fn gauge(
    encoder: &mut DescriptorEncoder,
    entries: &[&Entry],
    name: &str,
    help: &str,
    value: impl Fn(&Entry) -> Option<f64>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for entry in entries {
        if let Some(v) = value(entry) {
            let labels: Labels = &entry.target.labels;
            ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// One counter family: for every entry, a series per `(label value, count)` that `values` yields.
fn counter(
    encoder: &mut DescriptorEncoder,
    entries: &[&Entry],
    name: &str,
    help: &str,
    label: &str,
    values: impl Fn(&Entry) -> Vec<(&'static str, u64)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for entry in entries {
        let labels: Labels = &entry.target.labels;
        for (value, count) in values(entry) {
            ConstCounter::new(count).encode(family.encode_family(&(labels, [(label, value)]))?)?;
        }
    }
    Ok(())
}
