//! The walk over a parsed config: `defaults`, labels, locations and shards, the settings every
//! target inherits and their checks, the keys that belong to other types, and the dispatch of
//! each target's own keys to its type's builder (through the registry's [`Kind`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use super::assertions::assertions;
use super::names;
use super::raw::{RawConfig, RawDefaults, RawModule, RawTarget};
use super::sources::SourceInputs;
use super::target::{Config, FailureReasons, LoadOptions, Target};
use crate::build::error::ConfigErrors;
use crate::build::limits::{MAX_RETRIES, MIN_INTERVAL, MIN_TIMEOUT};
use crate::build::{
    Common, Context, Location, Origin, S, Setting, builtin, describe, hash_serialized, in_defaults,
    in_target,
};
use crate::duration::{self, ConfigDuration};
use crate::net::IpVersion;
use crate::probe::dns::config::RawDns;
use crate::probe::{Addresses, Kind, RunPolicy, Sections};
use crate::shard::Shard;

pub const DEFAULT_MAX_CONCURRENT_PROBES: usize = 512;
/// Far above any file-descriptor limit; it only keeps absurd values out of the semaphore.
const MAX_CONCURRENT_PROBES_LIMIT: usize = 1_000_000;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub(super) const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// The settings a target inherits: built-in values, overridden by `defaults`, then by the target.
#[derive(Debug, Clone, Copy)]
pub(super) struct Schedule {
    interval: Setting<Duration>,
    timeout: Setting<Duration>,
    retries: Setting<u32>,
    retry_delay: Setting<Duration>,
    interval_on_failure: Option<Setting<Duration>>,
    ip_version: IpVersion,
    addresses: Addresses,
}

/// The schedule keys as written in one place (`defaults` or a target).
struct Overrides<'r> {
    interval: Option<&'r S<ConfigDuration>>,
    timeout: Option<&'r S<ConfigDuration>>,
    retries: Option<&'r S<i64>>,
    retry_delay: Option<&'r S<ConfigDuration>>,
    interval_on_failure: Option<&'r S<ConfigDuration>>,
    ip_version: Option<&'r S<IpVersion>>,
    addresses: Option<&'r S<Addresses>>,
}

impl<'r> From<&'r RawDefaults> for Overrides<'r> {
    fn from(d: &'r RawDefaults) -> Self {
        Overrides {
            interval: d.interval.as_ref(),
            timeout: d.timeout.as_ref(),
            retries: d.retries.as_ref(),
            retry_delay: d.retry_delay.as_ref(),
            interval_on_failure: d.interval_on_failure.as_ref(),
            ip_version: d.ip_version.as_ref(),
            addresses: d.addresses.as_ref(),
        }
    }
}

impl<'r> From<&'r RawTarget> for Overrides<'r> {
    fn from(t: &'r RawTarget) -> Self {
        Overrides {
            interval: t.interval.as_ref(),
            timeout: t.timeout.as_ref(),
            retries: t.retries.as_ref(),
            retry_delay: t.retry_delay.as_ref(),
            interval_on_failure: t.interval_on_failure.as_ref(),
            ip_version: t.ip_version.as_ref(),
            addresses: t.addresses.as_ref(),
        }
    }
}

/// What every target of a load inherits, and how the load picks the ones this instance runs.
pub(super) struct Inherit<'r> {
    pub defaults: &'r Schedule,
    pub labels: &'r BTreeMap<String, String>,
    pub location: &'r str,
    pub failure_reasons: FailureReasons,
    /// See [`inherited_digest`].
    pub digest: u64,
    pub options: &'r LoadOptions,
    /// Modules with mistakes, reported where they are written: their targets are skipped.
    pub broken: &'r HashSet<String>,
}

/// The targets a load keeps, and how many it leaves to other locations and shards.
#[derive(Default)]
pub(super) struct Placed {
    pub targets: Vec<Arc<Target>>,
    pub elsewhere: Vec<String>,
    pub other_shards: usize,
}

impl Placed {
    pub fn append(&mut self, other: Placed) {
        self.targets.extend(other.targets);
        self.elsewhere.extend(other.elsewhere);
        self.other_shards += other.other_shards;
    }
}

/// One entry to build: a target of the config, or one of a source's list.
pub(super) struct Entry<'r> {
    pub raw: &'r RawTarget,
    pub at: Location,
    pub path: &'r str,
    /// For a dns module that names its question: the server, which the list gives.
    pub dns_server: Option<S<String>>,
}

/// Walks the raw config: what every target shares is checked here, and each target's own
/// keys by its type's builder, through [`Kind::build`].
pub struct Builder<'a> {
    pub cx: Context<'a>,
    /// This instance's location, every target's `location` label.
    location: String,
}

impl<'a> Builder<'a> {
    pub fn new(cx: Context<'a>) -> Self {
        Builder {
            cx,
            location: String::new(),
        }
    }

    fn error(&mut self, at: &Location, path: impl Into<String>, message: impl Into<String>) {
        self.cx.error(at, path, message);
    }

    /// Builds `raw`, freeing each of its targets once built: a load holds the raw and the
    /// built form of only one target at a time, beside the rest of the file.
    pub fn build(
        &mut self,
        mut raw: RawConfig,
        options: &LoadOptions,
        inputs: &SourceInputs,
    ) -> Result<Config, ConfigErrors> {
        let location = options
            .location
            .clone()
            .or_else(|| raw.location.as_ref().map(|l| l.value.clone()))
            .unwrap_or_default();
        self.location.clone_from(&location);
        let global_labels = names::labels(&mut self.cx, raw.labels.as_ref(), "labels");
        let builtin = Schedule {
            interval: builtin(DEFAULT_INTERVAL),
            timeout: builtin(DEFAULT_TIMEOUT),
            retries: builtin(0),
            retry_delay: builtin(DEFAULT_RETRY_DELAY),
            interval_on_failure: None,
            ip_version: IpVersion::Auto,
            addresses: Addresses::First,
        };
        let defaults = match &raw.defaults {
            Some(d) => {
                let schedule = self.layer(
                    &builtin,
                    &Overrides::from(&d.value),
                    "defaults",
                    Origin::Defaults,
                );
                self.check_schedule(&schedule, "defaults", in_defaults);
                schedule
            }
            None => builtin,
        };
        let max_concurrent_probes = match &raw.max_concurrent_probes {
            None => DEFAULT_MAX_CONCURRENT_PROBES,
            Some(m) => match usize::try_from(m.value) {
                Ok(n) if (1..=MAX_CONCURRENT_PROBES_LIMIT).contains(&n) => n,
                _ => {
                    self.error(
                        &m.referenced,
                        "max_concurrent_probes",
                        format!(
                            "must be from 1 to {MAX_CONCURRENT_PROBES_LIMIT}, not {}",
                            m.value
                        ),
                    );
                    DEFAULT_MAX_CONCURRENT_PROBES
                }
            },
        };

        let failure_reasons = raw.failure_reasons.unwrap_or_default();
        let (modules, broken) = self.modules(&raw, &defaults);
        let inherit = Inherit {
            defaults: &defaults,
            labels: &global_labels,
            location: &location,
            failure_reasons,
            digest: inherited_digest(&raw, &location),
            options,
            broken: &broken,
        };
        let targets = std::mem::take(&mut raw.targets);
        let mut first_use: HashMap<String, Location> = HashMap::with_capacity(targets.len());
        let mut placed = Placed::default();
        for (i, t) in targets.into_iter().enumerate() {
            let path = format!("targets[{i}]");
            let name = &t.value.name;
            // A name that is refused is not compared: it may be megabytes long.
            let first = names::name(&mut self.cx, name, &path)
                && match first_use.get(name.value.as_str()) {
                    Some(first) => {
                        self.error(
                            &name.referenced,
                            format!("{path}.name"),
                            format!(
                                "duplicate name {:?}: names must be unique (first used on line {})",
                                name.value,
                                first.line()
                            ),
                        );
                        false
                    }
                    None => true,
                };
            let entry = Entry {
                raw: &t.value,
                at: t.referenced,
                path: &path,
                dns_server: None,
            };
            self.place(&entry, &raw.modules, &inherit, &mut placed);
            if first {
                let RawTarget { name, .. } = *t.value;
                first_use.insert(name.value, name.referenced);
            }
        }
        // The names the sources' targets must not take; a config without sources needs none.
        let mut taken: HashSet<String> = if raw.target_sources.is_empty() {
            HashSet::new()
        } else {
            first_use.into_keys().collect()
        };
        let sources = self.sources(&raw, &inherit, inputs, &mut taken, &mut placed);

        let hostname = crate::shard::Shard::hostname().ok();
        let remote_write =
            super::remote_write::build(&mut self.cx, &raw.remote_write, hostname.as_deref());

        if !self.cx.has_errors() {
            Ok(Config {
                location,
                max_concurrent_probes,
                failure_reasons,
                targets: placed.targets,
                elsewhere: placed.elsewhere,
                shard: if options.every_location {
                    Shard::WHOLE
                } else {
                    options.shard
                },
                other_shards: placed.other_shards,
                remote_write,
                modules,
                sources,
            })
        } else {
            Err(ConfigErrors(self.cx.take_errors()))
        }
    }

    /// Builds one entry, with the module it names, and files the target where it belongs: run
    /// here, left to other locations, or to other shards.
    pub(super) fn place(
        &mut self,
        e: &Entry,
        modules: &BTreeMap<String, S<RawModule>>,
        inherit: &Inherit,
        into: &mut Placed,
    ) {
        let runs_here = self.runs_here(e.raw, e.path, inherit.location);
        self.cx.start_target();
        let Some((mut entry, kind)) =
            self.with_module(e.raw, modules, inherit.broken, e.path, &e.at)
        else {
            return;
        };
        if let Some(server) = &e.dns_server {
            // A dns module that names its question takes the server from the list, in the
            // module's `dns` table or in one of its own.
            let at = server.referenced;
            let dns = entry
                .to_mut()
                .dns
                .get_or_insert_with(|| Box::new(S::new(RawDns::default(), at)));
            dns.value.server = Some(server.clone());
        }
        let Some(mut target) = self.target(
            &entry,
            kind,
            &e.at,
            e.path,
            inherit.defaults,
            inherit.labels,
        ) else {
            return;
        };
        target.failure_reasons = inherit.failure_reasons;
        target.fingerprint = self.fingerprint(inherit.digest, &entry);
        if inherit.options.every_location {
            into.targets.push(Arc::new(target));
        } else if !runs_here {
            into.elsewhere.push(target.name);
        } else if inherit.options.shard.owns(&target.name) {
            into.targets.push(Arc::new(target));
        } else {
            into.other_shards += 1;
        }
    }

    fn runs_here(&mut self, t: &RawTarget, path: &str, location: &str) -> bool {
        let Some(locations) = &t.locations else {
            return true;
        };
        if locations.value.is_empty() || locations.value.iter().any(|l| l.trim().is_empty()) {
            self.error(
                &locations.referenced,
                format!("{path}.locations"),
                "list one or more location names, or leave `locations` out to run everywhere",
            );
        }
        locations.value.iter().any(|l| l == location)
    }

    fn layer(
        &mut self,
        base: &Schedule,
        over: &Overrides,
        path: &str,
        origin: fn(Location) -> Origin,
    ) -> Schedule {
        let duration = |raw: Option<&S<ConfigDuration>>, inherited: Setting<Duration>| {
            raw.map_or(inherited, |d| Setting {
                value: d.value.0,
                origin: origin(d.referenced),
            })
        };
        let retries = match over.retries {
            None => base.retries,
            Some(r) => match u32::try_from(r.value) {
                Ok(value) if value <= MAX_RETRIES => Setting {
                    value,
                    origin: origin(r.referenced),
                },
                _ => {
                    self.error(
                        &r.referenced,
                        format!("{path}.retries"),
                        format!(
                            "must be 0 to {MAX_RETRIES}, not {}: each retry is another \
                             connection to a service that just failed",
                            r.value
                        ),
                    );
                    base.retries
                }
            },
        };
        Schedule {
            interval: duration(over.interval, base.interval),
            timeout: duration(over.timeout, base.timeout),
            retries,
            retry_delay: duration(over.retry_delay, base.retry_delay),
            interval_on_failure: over
                .interval_on_failure
                .map(|d| Setting {
                    value: d.value.0,
                    origin: origin(d.referenced),
                })
                .or(base.interval_on_failure),
            ip_version: over.ip_version.map_or(base.ip_version, |v| v.value),
            addresses: over.addresses.map_or(base.addresses, |a| a.value),
        }
    }

    /// Checks how the schedule's durations relate. A rule is reported where one of its settings
    /// was written in this scope (`local`); rules among inherited values were checked there.
    fn check_schedule(&mut self, s: &Schedule, path: &str, local: fn(&Origin) -> bool) {
        let blame = |b: &mut Self, candidates: &[(&str, Origin)], message: String| {
            if let Some((key, Origin::Defaults(at) | Origin::Target(at))) =
                candidates.iter().find(|(_, o)| local(o))
            {
                b.error(at, format!("{path}.{key}"), message);
            }
        };
        let t = s.timeout;
        let i = s.interval;
        // Relations are checked among values above their floors only: one mistake, one error.
        let floor = |b: &mut Self, key: &str, setting: Setting<Duration>, min: Duration| {
            if setting.value < min {
                blame(b, &[(key, setting.origin)], too_short(setting.value, min));
            }
            setting.value >= min
        };
        let interval_ok = floor(self, "interval", i, MIN_INTERVAL);
        let timeout_ok = floor(self, "timeout", t, MIN_TIMEOUT);
        if interval_ok && timeout_ok && t.value >= i.value {
            blame(
                self,
                &[("timeout", t.origin), ("interval", i.origin)],
                format!(
                    "timeout {} must be shorter than interval {}: a run must end before the next starts",
                    describe(&t, local),
                    describe(&i, local)
                ),
            );
        }
        if let Some(iof) = s.interval_on_failure
            && floor(self, "interval_on_failure", iof, MIN_INTERVAL)
            && iof.value <= t.value
        {
            blame(
                self,
                &[("interval_on_failure", iof.origin), ("timeout", t.origin)],
                format!(
                    "interval_on_failure {} must be longer than timeout {}",
                    describe(&iof, local),
                    describe(&t, local)
                ),
            );
        }
        let r = s.retries;
        let d = s.retry_delay;
        if r.value > 0 && d.value >= t.value {
            blame(
                self,
                &[
                    ("retry_delay", d.origin),
                    ("retries", r.origin),
                    ("timeout", t.origin),
                ],
                format!(
                    "retry_delay {} must be shorter than timeout {}: retries happen within one run's timeout",
                    describe(&d, local),
                    describe(&t, local)
                ),
            );
        }
    }

    pub(super) fn target(
        &mut self,
        t: &RawTarget,
        kind: Kind,
        at: &Location,
        path: &str,
        defaults: &Schedule,
        global_labels: &BTreeMap<String, String>,
    ) -> Option<Target> {
        let name = &t.name;
        let schedule = self.layer(defaults, &Overrides::from(t), path, Origin::Target);
        self.check_schedule(&schedule, path, in_target);
        // Most targets have no labels of their own: they take the global ones as they are.
        let own_labels = t.labels.as_ref().map(|own| {
            let labels_path = format!("{path}.labels");
            let target_labels = names::labels(&mut self.cx, Some(own), &labels_path);
            let mut labels = global_labels.clone();
            labels.extend(target_labels);
            names::merged_count(
                &mut self.cx,
                Some(own),
                global_labels.len(),
                labels.len(),
                &labels_path,
            );
            labels
        });
        let labels = own_labels.as_ref().unwrap_or(global_labels);

        let tls_table_on = t
            .tls
            .as_ref()
            .is_some_and(|tls| tls.value.enabled != Some(false));
        let https = t.url.as_ref().is_some_and(|u| {
            u.value
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        });
        let tls_on = tls_table_on || (kind == Kind::Http && https);
        let assertions = assertions(&mut self.cx, t.assertions.as_ref(), path, tls_on);
        let foreign_ok = self.foreign_keys(t, kind, path);
        let resolver = if kind.resolves_host() {
            self.resolver(t, kind, path)
        } else {
            Some(None)
        };
        let common = Common {
            path,
            at: *at,
            host: t.host.as_ref(),
            port: t.port.as_ref(),
            url: t.url.as_ref(),
            ip_version: schedule.ip_version,
            timeout: schedule.timeout,
            resolver,
        };
        let sections = Sections {
            tcp: t.tcp.as_deref(),
            tls: t.tls.as_deref(),
            http: t.http.as_deref(),
            dns: t.dns.as_deref(),
            icmp: t.icmp.as_deref(),
        };
        let probe = kind
            .build(&mut self.cx, &common, &sections)
            .filter(|_| foreign_ok)?;
        Some(Target::new(
            name.value.clone(),
            probe,
            RunPolicy {
                timeout: schedule.timeout.value,
                retries: schedule.retries.value,
                retry_delay: schedule.retry_delay.value,
                addresses: schedule.addresses,
            },
            schedule.interval.value,
            schedule.interval_on_failure.map(|s| s.value),
            assertions?,
            &self.location,
            labels,
        ))
    }

    /// See [`Target::fingerprint`]. Serializing the parsed entry drops source positions (spans
    /// serialize as their value) and covers every option, inline secrets included, without a
    /// list that could fall behind the schema.
    fn fingerprint(&self, inherited: u64, raw: &RawTarget) -> u64 {
        let mut hasher = DefaultHasher::new();
        hasher.write_u64(inherited);
        hash_serialized(&mut hasher, raw);
        self.cx.hash_used(&mut hasher);
        hasher.finish()
    }
}

/// The message for a duration below its floor ([`MIN_INTERVAL`], [`MIN_TIMEOUT`]). A sub-second
/// value is most often minutes written as `ms`.
fn too_short(value: Duration, min: Duration) -> String {
    let hint = if !value.is_zero() && value < Duration::from_secs(1) {
        " (`ms` is milliseconds; minutes are `m`)"
    } else {
        ""
    };
    format!(
        "must be at least {}, not {}{hint}",
        duration::format(min),
        duration::format(value)
    )
}

/// Digest of what every target inherits: `defaults`, global `labels`, the location and
/// `failure_reasons` (as it applies: written out as the default, it changes nothing).
fn inherited_digest(raw: &RawConfig, location: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    let inherited = (
        raw.defaults.as_ref().map(|d| &d.value),
        raw.labels.as_ref().map(|l| &l.value),
        location,
        raw.failure_reasons.unwrap_or_default(),
    );
    hash_serialized(&mut hasher, &inherited);
    hasher.finish()
}
