//! vantage: an availability prober and Prometheus exporter.
//!
//! Dependencies run one way (ARCHITECTURE.md draws them): `outcome` (reasons, failures,
//! traces, runs) <- `net` (sockets, resolution, the gentle close, a DNS client) <- `build` (what
//! a type's config builder needs) <- `tls` <- the probe types under `probe/` <- the registry
//! (`probe`) <- `config` <- the runtime (`store`, `scheduler`, `reload`) <- the outputs
//! (`server`, `metrics`, `push`, `status_page`, `report`) <- `main`.

pub mod build;
pub mod cli;
pub mod config;
pub mod discover;
pub mod duration;
pub mod exposition;
pub mod family;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod import;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod outcome;
pub mod probe;
pub mod push;
pub mod reload;
pub mod report;
pub mod scheduler;
pub mod server;
pub mod shard;
pub mod status_page;
pub mod store;
pub mod tls;
