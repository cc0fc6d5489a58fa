//! `/metrics`: probe series, vantage's own metrics and `process_*`, in OpenMetrics 1.0 when the
//! scraper asks for it and in the classic text format 0.0.4 otherwise.
//!
//! The probe families are rendered at scrape time from a snapshot of the [`Store`] by
//! [`crate::exposition`], in either format, a chunk at a time. vantage's own metrics (a few
//! dozen series) go through prometheus-client, which writes OpenMetrics only; `classic`
//! derives their 0.0.4 rendering. The only live metric objects are the scheduler's histogram
//! and in-flight gauge.

mod blackbox;
pub(crate) mod classic;
mod format;
mod probes;
mod process;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::exposition::{Encoder, Sink};
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
    /// Where the probe series are rendered from.
    store: Arc<Store>,
    /// vantage's own metrics: the scheduler's, the config's, the push's, `process_*`.
    own: Registry,
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
            store: Arc::clone(&store),
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
        Metrics { store, own }
    }

    /// The whole scrape in one String: for HTTP/1.0 clients, which cannot take it in chunks.
    pub fn render(&self, format: Format) -> String {
        let mut out = String::new();
        let mut keep = |chunk: &mut String| {
            out.push_str(chunk);
            chunk.clear();
            Ok(())
        };
        // Writing into a String cannot fail; an encoder error would be a bug in the families.
        self.write(format, &mut keep)
            .expect("encoding metrics into a String");
        out
    }

    /// The scrape, handed to `sink` a chunk at a time: the probe families from a snapshot of
    /// the store, then vantage's own metrics. An error from the sink (its client has gone)
    /// stops the rendering.
    pub fn write(&self, format: Format, sink: Sink<'_>) -> fmt::Result {
        let classic = format == Format::Classic;
        let snapshot = self.store.snapshot();
        let mut encoder = Encoder::streaming(classic, sink);
        probes::encode(&mut encoder, &snapshot)?;
        drop(snapshot);
        let mut own = String::new();
        text::encode_registry(&mut own, &self.own)?;
        if classic {
            own = classic::from_openmetrics(&own);
        } else {
            text::encode_eof(&mut own)?;
        }
        encoder.raw(&own)?;
        encoder.finish().map(drop)
    }

    /// vantage's own metrics alone, in OpenMetrics: what a push sends of them.
    pub fn render_own(&self) -> String {
        let mut out = String::new();
        text::encode(&mut out, &self.own).expect("encoding metrics into a String");
        out
    }
}

/// One target's probe series, in OpenMetrics: what a push sends of a run.
pub fn render_entry(entry: Arc<Entry>) -> String {
    let mut encoder = Encoder::whole(false);
    probes::encode(&mut encoder, &[entry]).expect("encoding metrics into a String");
    let mut out = encoder.finish().expect("encoding metrics into a String");
    out.push_str("# EOF\n");
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

        let counts = self.store.kinds();
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
