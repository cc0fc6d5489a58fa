//! The scheduler's own instruments, live metric objects that it updates as it runs and that
//! `/metrics` registers: how late runs start, and how many are in flight.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// The metric objects the scheduler updates as it runs.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub schedule_delay: Histogram,
    pub in_flight: Gauge,
}

impl Telemetry {
    pub fn new() -> Self {
        Telemetry {
            // From 100 µs (a healthy scheduler wakes within the timer's 1 ms tick) to 30 s
            // (starved by the concurrency limit), fine enough below 10 ms to tell p50 from p99.
            schedule_delay: Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            in_flight: Gauge::default(),
        }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}
