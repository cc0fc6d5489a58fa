//! The validated config: `exporter.yml` parsed (see `raw`) and then checked and built into
//! targets that are ready to run. Runtime code never parses a string.
//!
//! This module keeps what is common (reading the file, located errors, defaults, labels,
//! locations, shards, assertions); each target's own keys are built by its type's folder
//! under `probe`, dispatched through the registry.
//!
//! Validation collects every mistake it can find rather than stopping at the first, and each
//! names file, line, column and key path.

mod adhoc;
mod assertions;
mod builder;
mod raw;
mod summary;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::build::error::{ConfigError, ConfigErrors};
use crate::build::{Context, digest_read, read_bytes};
use crate::probe::{Assertion, Probe, Reason, ReasonSet, RunPolicy};
use crate::shard::Shard;
use builder::Builder;
pub use builder::DEFAULT_MAX_CONCURRENT_PROBES;
use raw::RawConfig;

/// A config that passed validation.
#[derive(Debug)]
pub struct Config {
    /// This instance's vantage point, after `--location` / `VANTAGE_LOCATION`.
    pub location: String,
    pub max_concurrent_probes: usize,
    /// The targets this instance runs.
    pub targets: Vec<Arc<Target>>,
    /// Names of targets whose `locations` do not include this instance's.
    pub elsewhere: Vec<String>,
    /// The shard this instance is (`--shard`), and how many of this location's targets the
    /// other shards probe.
    pub shard: Shard,
    pub other_shards: usize,
}

/// One configured check.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub probe: Probe,
    pub policy: RunPolicy,
    pub interval: Duration,
    pub interval_on_failure: Option<Duration>,
    pub assertions: Vec<Assertion>,
    /// The identity of every series of this target: name, probe, target, location, static labels.
    pub labels: Vec<(String, String)>,
    /// Digest of everything the target was built from: its entry as parsed (comments, layout
    /// and position in the file do not count), the defaults, labels and location it inherits,
    /// and the content of every file it reads. A reload restarts a target only when this
    /// changes. Zero for targets from the command line.
    pub fingerprint: u64,
}

impl Target {
    /// Every reason a run of this target can end with: its probe's, and those its assertions
    /// add.
    pub fn reasons(&self) -> ReasonSet {
        let own = self.assertions.iter().map(|a| match a {
            Assertion::Connection { .. } | Assertion::ResponseTime { .. } => {
                Reason::AssertionFailed
            }
            Assertion::CertificateExpiry { .. } => Reason::TlsCertExpiring,
            Assertion::TlsVersion { .. } => Reason::TlsProtocolVersion,
        });
        own.fold(self.probe.reasons(), |set, r| {
            set.union(ReasonSet::of(&[r]))
        })
    }

    #[allow(clippy::too_many_arguments)] // one call per way a target is made; a struct adds nothing
    pub(crate) fn new(
        name: String,
        probe: Probe,
        policy: RunPolicy,
        interval: Duration,
        interval_on_failure: Option<Duration>,
        assertions: Vec<Assertion>,
        location: &str,
        static_labels: &BTreeMap<String, String>,
    ) -> Target {
        let mut labels = vec![
            ("name".to_string(), name.clone()),
            ("probe".to_string(), probe.kind().to_string()),
            ("target".to_string(), probe.target()),
            ("location".to_string(), location.to_string()),
        ];
        labels.extend(static_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        Target {
            name,
            probe,
            policy,
            interval,
            interval_on_failure,
            assertions,
            labels,
            fingerprint: 0,
        }
    }
}

/// How a config is read.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Overrides the file's `location` (`--location`, `VANTAGE_LOCATION`).
    pub location: Option<String>,
    /// Keep targets meant for other locations and other shards too (`vantage probe --name`).
    pub every_location: bool,
    /// Keep only this shard's targets (`--shard`).
    pub shard: Shard,
}

pub fn load(path: &Path, options: &LoadOptions) -> Result<Config, ConfigErrors> {
    parse(&read(path)?, &path.display().to_string(), options)
}

/// The config file's text, or an error that names the file.
pub fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::whole_file(
            &path.display().to_string(),
            format!("cannot read the config file: {e}"),
        )])
    })
}

/// The parser's limits. Its defaults (250,000 nodes, 1,000,000 events) stop at about 25,000
/// targets; these admit a million short ones, while the alias and anchor limits that stop
/// expansion bombs stay as they are.
fn parse_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 16_000_000;
    budget.max_events = 32_000_000;
    budget.max_total_scalar_bytes = 256 * 1024 * 1024;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// Parses and validates config text; `file` names it in errors.
pub fn parse(text: &str, file: &str, options: &LoadOptions) -> Result<Config, ConfigErrors> {
    parse_with_inputs(text, file, options).0
}

/// [`parse`], also returning the files the config names as read during the load (those read
/// before an error, when it fails).
pub fn parse_with_inputs(
    text: &str,
    file: &str,
    options: &LoadOptions,
) -> (Result<Config, ConfigErrors>, Inputs) {
    let mut path = String::new();
    let raw: Result<RawConfig, _> =
        serde_saphyr::with_deserializer_from_str_with_options(text, parse_options(), |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                path = e.path().to_string();
                e.into_inner()
            })
        })
        .map_err(|e| ConfigErrors(vec![ConfigError::from_parse(file, &e, &path)]));
    let raw = match raw {
        Ok(raw) => raw,
        Err(errors) => return (Err(errors), Inputs::default()),
    };
    let mut builder = Builder {
        cx: Context::new(file),
    };
    let config = builder.build(&raw, options);
    let inputs = Inputs {
        files: builder.cx.digests(),
    };
    (config, inputs)
}

/// The files a config names (tokens, CAs, client certificates), each with a digest of the
/// content it was built from, so that a reload can tell whether any of them changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    pub files: BTreeMap<PathBuf, u64>,
}

impl Inputs {
    /// Whether every file still has the content it had when the config was built.
    pub fn unchanged_on_disk(&self) -> bool {
        self.files
            .iter()
            .all(|(path, digest)| digest_read(&read_bytes(path)) == *digest)
    }
}

#[cfg(test)]
mod tests;
