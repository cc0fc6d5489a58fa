//! vantage: an availability prober and Prometheus exporter.
//!
//! `config` turns `exporter.yml` into targets; `scheduler` runs each on its interval through
//! `probe`; results land in `store`, which `metrics` and `status_page` read when `server` is
//! asked. `reload` replaces the running config when its file changes. `net` is the only module
//! that touches sockets directly.

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod duration;
pub mod family;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod outcome;
pub mod probe;
pub mod reload;
pub mod report;
pub mod scheduler;
pub mod server;
pub mod shard;
pub mod status_page;
pub mod store;
pub mod tls;
