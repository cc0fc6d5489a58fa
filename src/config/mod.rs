//! The validated config: `exporter.yml` parsed (see `raw`) and then checked and built into
//! targets that are ready to run. Runtime code never parses a string.
//!
//! This module keeps what is common (reading the file, located errors, defaults, labels,
//! locations, shards, assertions); each target's own keys are built by its type's folder
//! under `probe`, dispatched through the registry.
//!
//! Validation collects every mistake it can find rather than stopping at the first, and each
//! names file, line, column and key path.
//!
//! The children import one another by their own paths, never through this module's
//! re-exports, so that the files form no cycle.

mod adhoc;
pub mod allow;
mod assertions;
mod builder;
pub mod endpoint;
mod keys;
mod load;
mod modules;
mod names;
mod raw;
pub mod remote_write;
pub mod sources;
mod summary;
mod target;

pub use crate::build::error::{ConfigError, ConfigErrors};
pub use builder::DEFAULT_MAX_CONCURRENT_PROBES;
pub use load::{Inputs, load, parse, parse_reading, parse_with_inputs, read};
pub use names::label_name_problem;
pub use sources::{ListState, Listed, Source, SourceInputs, SourceKind, SourceReport};
pub use target::{Config, FailureReasons, LoadOptions, Module, Target};

#[cfg(test)]
mod tests;
