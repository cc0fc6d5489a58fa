//! The validated config and its targets, ready to run, and how a config is read.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::allow::Allow;
pub use super::raw::FailureReasons;
use super::remote_write::RemoteWrite;
use super::sources::SourceReport;
use crate::exposition::{label_text, read_value};
use crate::probe::{Assertion, Probe, Reason, ReasonSet, RunPolicy};
use crate::shard::Shard;

/// A config that passed validation.
#[derive(Debug)]
pub struct Config {
    /// This instance's vantage point, after `--location` / `VANTAGE_LOCATION`.
    pub location: String,
    pub max_concurrent_probes: usize,
    /// The targets this instance runs.
    pub targets: Vec<Arc<Target>>,
    /// The top-level `failure_reasons`, which every target carries.
    pub failure_reasons: FailureReasons,
    /// Names of targets whose `locations` do not include this instance's.
    pub elsewhere: Vec<String>,
    /// The shard this instance is (`--shard`), and how many of this location's targets the
    /// other shards probe.
    pub shard: Shard,
    pub other_shards: usize,
    /// The receivers this instance pushes its series to.
    pub remote_write: Vec<RemoteWrite>,
    /// The config's modules, built, for `/probe`.
    pub modules: BTreeMap<String, Arc<Module>>,
    /// What each target source gave; its targets are among `targets` and `elsewhere`.
    pub sources: Vec<SourceReport>,
}

/// A module built on its own: a target at a stand-in address that `/probe` points at the
/// target its caller gives (see [`crate::probe::Probe::retarget`]).
#[derive(Debug)]
pub struct Module {
    pub name: String,
    pub template: Target,
    /// A dns module that names the host it asks about: `/probe`'s target is then the server.
    pub asks_name: bool,
    /// Whom `/probe` may reach with it; `None`: `/probe` refuses the module.
    pub allow: Option<Allow>,
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
    pub labels: Labels,
    /// Which series of `probe_failures_total` it has (the config's `failure_reasons`).
    pub failure_reasons: FailureReasons,
    /// Digest of everything the target was built from: its entry as parsed (comments, layout
    /// and position in the file do not count), the defaults, labels, location and
    /// `failure_reasons` it inherits, and the content of every file it reads. A reload restarts a target only when this
    /// changes. Zero for targets from the command line.
    pub fingerprint: u64,
}

impl Target {
    /// The value of one of the target's labels (`target`, `location`, a static label).
    pub fn label(&self, name: &str) -> Option<Cow<'_, str>> {
        self.labels.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

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
        let target = probe.target();
        let mut labels = vec![
            ("name", name.as_str()),
            ("probe", probe.kind()),
            ("target", target.as_str()),
            ("location", location),
        ];
        labels.extend(static_labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let labels = Labels::new(&labels);
        Target {
            name,
            probe,
            policy,
            interval,
            interval_on_failure,
            assertions,
            labels,
            failure_reasons: FailureReasons::default(),
            fingerprint: 0,
        }
    }
}

/// A target's labels as each of its series starts: `name="a",probe="tcp",target="...",
/// location="..."`, then its static labels, values escaped for the exposition. One text per
/// target, which a scrape copies into every series of the target as it is. Each target holds
/// its own copy of the location and static labels: for the usual short labels that is less
/// than the pointers to shared texts it replaces (32 bytes a label), though a long static
/// label now costs its length in every target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels(Box<str>);

impl Labels {
    pub fn new<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Labels {
        Labels(label_text(pairs).into_boxed_str())
    }

    /// As the exposition writes them.
    pub fn text(&self) -> &str {
        &self.0
    }

    /// Each label's name and value (unescaped), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
        let mut rest = &*self.0;
        std::iter::from_fn(move || {
            // Label names are plain identifiers, and a quote in a value is escaped: the first
            // `="` ends a name.
            let (name, after) = rest.split_once("=\"")?;
            let (value, after) = read_value(after)?;
            rest = after.strip_prefix(',').unwrap_or(after);
            Some((name, value))
        })
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
