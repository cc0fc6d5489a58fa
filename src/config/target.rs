//! The validated config and its targets, ready to run, and how a config is read.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::allow::Allow;
pub use super::raw::FailureReasons;
use super::remote_write::RemoteWrite;
use super::sources::SourceReport;
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
    pub labels: Vec<(Label, Label)>,
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
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| &**v)
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
        texts: &mut LabelTexts,
        static_labels: &BTreeMap<String, String>,
    ) -> Target {
        let mut labels = Vec::with_capacity(4 + static_labels.len());
        labels.extend([
            (texts.shared("name"), Label::from(name.as_str())),
            (texts.shared("probe"), texts.shared(probe.kind())),
            (texts.shared("target"), Label::from(probe.target())),
            (texts.shared("location"), Arc::clone(&texts.location)),
        ]);
        labels.extend(
            static_labels
                .iter()
                .map(|(k, v)| (texts.shared(k), texts.shared(v))),
        );
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

/// A label's name or value. A million targets carry the same few names, kinds, location and
/// static labels: each text is one allocation they share, which halves what a target's labels
/// hold (see the test `a_target_shares_its_label_texts`).
pub type Label = Arc<str>;

/// The label texts that the targets of one load share; each target's own `name` and `target`
/// values are its own.
#[derive(Debug)]
pub struct LabelTexts {
    location: Label,
    texts: HashSet<Label>,
}

impl LabelTexts {
    pub fn new(location: &str) -> Self {
        LabelTexts {
            location: Label::from(location),
            texts: HashSet::new(),
        }
    }

    /// `text`, allocated on its first use in this load.
    fn shared(&mut self, text: &str) -> Label {
        if let Some(shared) = self.texts.get(text) {
            return Arc::clone(shared);
        }
        let shared = Label::from(text);
        self.texts.insert(Arc::clone(&shared));
        shared
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
