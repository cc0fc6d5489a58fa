//! `/metrics`: probe series, vantage's own metrics and `process_*`, in OpenMetrics 1.0 when the
//! scraper asks for it and in the classic text format 0.0.4 otherwise.
//!
//! prometheus-client writes OpenMetrics only; `classic` derives the 0.0.4 rendering from it.
//! Probe gauges and counters are rendered at scrape time from the [`Store`]; the only live
//! metric objects are the scheduler's histogram and in-flight gauge.

mod blackbox;
mod classic;
mod format;
mod probes;
mod process;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::reload::ReloadStatus;
use crate::scheduler::{Limiter, Shared};
use crate::shard::Shard;
use crate::store::{Entry, Store};
pub use blackbox::render_probe;
pub use format::Format;

/// Facts about this process, fixed at start-up.
#[derive(Debug, Clone)]
pub struct Build {
    pub version: &'static str,
    pub revision: &'static str,
    pub started: SystemTime,
    pub shard: Shard,
}

pub struct Metrics {
    /// The probe series, rendered from the store.
    probes: Registry,
    /// vantage's own metrics: the scheduler's, the config's, the push's, `process_*`.
    own: Registry,
    /// The size of the last rendering, to start the next one at about its size: growing a
    /// String of many megabytes by doubling leaves freed copies behind in the allocator.
    last_size: AtomicUsize,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// `extra` are collectors of vantage's own metrics from outside this module (the push's).
    pub fn new(
        shared: &Shared,
        reloads: Arc<ReloadStatus>,
        build: Build,
        extra: Vec<Box<dyn Collector>>,
    ) -> Self {
        let telemetry = &shared.telemetry;
        let store = Arc::clone(&shared.store);
        let mut probes = Registry::default();
        probes.register_collector(Box::new(probes::ProbeCollector::new(Arc::clone(&store))));
        let mut own = Registry::default();
        own.register_with_unit(
            "vantage_probe_schedule_delay",
            "How late runs start against their schedule, waiting for the concurrency limit included",
            Unit::Seconds,
            telemetry.schedule_delay.clone(),
        );
        own.register(
            "vantage_probes_in_flight",
            "Runs in progress now",
            telemetry.in_flight.clone(),
        );
        own.register_collector(Box::new(SelfCollector {
            store,
            limiter: Arc::clone(&shared.limiter),
            reloads,
            build: build.clone(),
        }));
        for collector in extra {
            own.register_collector(collector);
        }
        own.register_collector(Box::new(process::ProcessCollector {
            started: build.started,
        }));
        Metrics {
            probes,
            own,
            last_size: AtomicUsize::new(0),
        }
    }

    pub fn render(&self, format: Format) -> String {
        let last = self.last_size.load(Ordering::Relaxed);
        let mut out = String::with_capacity(last + last / 16);
        // Writing into a String cannot fail; an encoder error would be a bug in the collectors.
        text::encode_registry(&mut out, &self.probes).expect("encoding metrics into a String");
        text::encode_registry(&mut out, &self.own).expect("encoding metrics into a String");
        text::encode_eof(&mut out).expect("encoding metrics into a String");
        self.last_size.store(out.len(), Ordering::Relaxed);
        match format {
            Format::OpenMetrics => out,
            Format::Classic => classic::from_openmetrics(&out),
        }
    }

    /// vantage's own metrics alone, in OpenMetrics: what a push sends of them.
    pub fn render_own(&self) -> String {
        let mut out = String::new();
        text::encode(&mut out, &self.own).expect("encoding metrics into a String");
        out
    }
}

/// One target's probe series, in OpenMetrics: what a push sends of a run.
pub fn render_entry(entry: Entry) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(probes::ProbeCollector::new(Arc::new(Store::of(
        entry,
    )))));
    let mut out = String::new();
    text::encode(&mut out, &registry).expect("encoding metrics into a String");
    out
}

/// `vantage_build_info`, the config state, `vantage_targets` and the concurrency limit.
#[derive(Debug)]
struct SelfCollector {
    store: Arc<Store>,
    limiter: Arc<Limiter>,
    reloads: Arc<ReloadStatus>,
    build: Build,
}

impl Collector for SelfCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut info = encoder.encode_descriptor(
            "vantage_build",
            "Version and git revision of the running vantage",
            None,
            MetricType::Info,
        )?;
        info.encode_info(&[
            ("version", self.build.version),
            ("revision", self.build.revision),
        ])?;
        let mut shard = encoder.encode_descriptor(
            "vantage_shard",
            "This instance's shard of the targets (index counts from 0); 0 of 1 when not sharded",
            None,
            MetricType::Info,
        )?;
        shard.encode_info(&[
            ("index", self.build.shard.index().to_string()),
            ("count", self.build.shard.count().to_string()),
        ])?;

        let reloads = self.reloads.get();
        ConstGauge::new(i64::from(reloads.last_successful)).encode(encoder.encode_descriptor(
            "vantage_config_last_reload_successful",
            "1 if the last attempt to load the config succeeded, 0 if the previous config is running because the file is bad",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(process::unix_seconds(reloads.last_success)).encode(
            encoder.encode_descriptor(
                "vantage_config_last_reload_success_timestamp_seconds",
                "When the running config was loaded, as a Unix timestamp",
                None,
                MetricType::Gauge,
            )?,
        )?;
        // Both results from the start, so that increase() sees the first failure.
        let mut counted = encoder.encode_descriptor(
            "vantage_config_reloads",
            "Config reloads since start-up, by result",
            None,
            MetricType::Counter,
        )?;
        for (result, count) in [
            ("success", reloads.successes),
            ("failure", reloads.failures),
        ] {
            ConstCounter::new(count).encode(counted.encode_family(&[("result", result)])?)?;
        }
        ConstGauge::new(i64::try_from(self.limiter.size()).unwrap_or(i64::MAX)).encode(
            encoder.encode_descriptor(
                "vantage_max_concurrent_probes",
                "The bound on runs in flight (max_concurrent_probes)",
                None,
                MetricType::Gauge,
            )?,
        )?;

        let counts = self.store.read(|entries| {
            let mut counts = std::collections::BTreeMap::<&'static str, i64>::new();
            for entry in entries.values() {
                *counts.entry(entry.target.probe.kind()).or_default() += 1;
            }
            counts
        });
        let mut targets = encoder.encode_descriptor(
            "vantage_targets",
            "Targets this instance probes, by probe type",
            None,
            MetricType::Gauge,
        )?;
        for (kind, count) in counts {
            ConstGauge::new(count).encode(targets.encode_family(&[("probe", kind)])?)?;
        }
        Ok(())
    }
}
