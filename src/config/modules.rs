//! `modules:`: named probe settings. A target that names one (`module: http_2xx`) takes the
//! module's type, schedule keys and tables, and says only where; `/probe` runs a module
//! against the target its caller gives.
//!
//! A module is built on its own first, against a stand-in address, so that its mistakes are
//! reported once, at the module, and `/probe` has it ready to point anywhere. A target merges
//! the module's keys into its own entry: its own schedule keys win, and a table (`http`,
//! `tls`, …) is the module's or the target's, never a merge of both, so that what runs is
//! what one place says.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::allow::Allow;
use super::builder::{Builder, Schedule};
use super::raw::{RawConfig, RawModule, RawTarget};
use super::target::Module;
use crate::build::{Location, S};
use crate::probe::Kind;

/// Longest module name: it is a label value on `/probe`'s counters and a URL parameter.
const MAX_MODULE_NAME: usize = 128;

/// What a target source's `template` is filed under beside the modules: a character no
/// module name has, so that no module and no group's `__param_module` can name it.
pub(super) const TEMPLATE: &str = "@";

fn stand_in<T>(value: T, at: Location) -> S<T> {
    S::new(value, at)
}

impl Builder<'_> {
    /// Builds every module; the names of those with mistakes are returned with them, so that
    /// targets naming them are skipped rather than reported again.
    pub(super) fn modules(
        &mut self,
        raw: &RawConfig,
        defaults: &Schedule,
    ) -> (BTreeMap<String, Arc<Module>>, HashSet<String>) {
        let mut built = BTreeMap::new();
        let mut broken = HashSet::new();
        for (name, m) in &raw.modules {
            let path = format!("modules.{name}");
            let errors = self.cx.error_count();
            if name.is_empty()
                || name.len() > MAX_MODULE_NAME
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            {
                self.cx.error(
                    &m.referenced,
                    "modules",
                    format!(
                        "invalid module name {:?}: use letters, digits, `_`, `-` and `.`, at \
                         most {MAX_MODULE_NAME}",
                        name.chars().take(MAX_MODULE_NAME).collect::<String>()
                    ),
                );
            }
            match self.module(name, m, &path, defaults) {
                Some(module) if self.cx.error_count() == errors => {
                    built.insert(name.clone(), Arc::new(module));
                }
                _ => {
                    broken.insert(name.clone());
                }
            }
        }
        (built, broken)
    }

    /// Builds one module (`modules.NAME`, or a target source's `template`) at its stand-in
    /// address; `None` after reporting a mistake.
    pub(super) fn module(
        &mut self,
        name: &str,
        m: &S<RawModule>,
        path: &str,
        defaults: &Schedule,
    ) -> Option<Module> {
        let errors = self.cx.error_count();
        if let Some(host) = &m.value.host
            && m.value.kind.value != Kind::Dns
        {
            self.cx.error(
                &host.referenced,
                format!("{path}.host"),
                "only a dns module names a host (the name it asks about); other modules \
                 take the host from each target",
            );
        }
        let allow = m
            .value
            .allow
            .as_ref()
            .and_then(|a| Allow::build(&mut self.cx, a, &format!("{path}.allow")));
        let entry = stand_in_target(name, m);
        let template = self.target(
            &entry,
            m.value.kind.value,
            &m.referenced,
            path,
            defaults,
            &BTreeMap::new(),
        )?;
        (self.cx.error_count() == errors).then(|| Module {
            name: name.to_string(),
            template,
            asks_name: m.value.host.is_some(),
            allow,
        })
    }

    /// The target as it runs: its own entry, or, when it names a module, the module's keys
    /// under its own; with its type. `None` after reporting a mistake, or when the module it
    /// names has mistakes of its own (reported there).
    pub(super) fn with_module<'t>(
        &mut self,
        t: &'t RawTarget,
        modules: &BTreeMap<String, S<RawModule>>,
        broken: &HashSet<String>,
        path: &str,
        at: &Location,
    ) -> Option<(std::borrow::Cow<'t, RawTarget>, Kind)> {
        let Some(name) = &t.module else {
            let Some(kind) = &t.kind else {
                self.cx.error(
                    at,
                    format!("{path}.type"),
                    "missing `type` (tcp, http, icmp or dns), or a `module` that gives one",
                );
                return None;
            };
            return Some((std::borrow::Cow::Borrowed(t), kind.value));
        };
        if broken.contains(&name.value) {
            return None;
        }
        let Some(module) = modules.get(&name.value) else {
            let known: Vec<&str> = modules
                .keys()
                .filter(|k| !k.starts_with(TEMPLATE))
                .take(20)
                .map(String::as_str)
                .collect();
            self.cx.error(
                &name.referenced,
                format!("{path}.module"),
                if known.is_empty() {
                    format!(
                        "unknown module {:?}: the config has no `modules`",
                        name.value
                    )
                } else {
                    format!(
                        "unknown module {:?}; modules: {}",
                        name.value,
                        known.join(", ")
                    )
                },
            );
            return None;
        };
        let m = &module.value;
        if let Some(kind) = &t.kind
            && kind.value != m.kind.value
        {
            self.cx.error(
                &kind.referenced,
                format!("{path}.type"),
                format!(
                    "module {:?} is a {} module: leave `type` out, or write the same",
                    name.value,
                    m.kind.value.as_str()
                ),
            );
            return None;
        }
        let tables = [
            (
                "tcp",
                t.tcp.as_ref().map(|x| x.referenced),
                m.tcp.as_ref().map(|x| x.referenced),
            ),
            (
                "tls",
                t.tls.as_ref().map(|x| x.referenced),
                m.tls.as_ref().map(|x| x.referenced),
            ),
            (
                "http",
                t.http.as_ref().map(|x| x.referenced),
                m.http.as_ref().map(|x| x.referenced),
            ),
            (
                "icmp",
                t.icmp.as_ref().map(|x| x.referenced),
                m.icmp.as_ref().map(|x| x.referenced),
            ),
            (
                "dns",
                t.dns.as_ref().map(|x| x.referenced),
                m.dns.as_ref().map(|x| x.referenced),
            ),
            (
                "assertions",
                t.assertions.as_ref().map(|x| x.referenced),
                m.assertions.as_ref().map(|x| x.referenced),
            ),
        ];
        let mut ok = true;
        for (key, written, in_module) in tables {
            if let (Some(written), Some(in_module)) = (written, in_module) {
                self.cx.error(
                    &written,
                    format!("{path}.{key}"),
                    format!(
                        "module {:?} sets `{key}` (line {}); tables are not merged: move this \
                         one into a module of its own, or leave it out",
                        name.value,
                        in_module.line()
                    ),
                );
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        let merged = RawTarget {
            kind: Some(m.kind.clone()),
            host: t.host.clone().or_else(|| m.host.clone()),
            interval: t.interval.clone().or_else(|| m.interval.clone()),
            timeout: t.timeout.clone().or_else(|| m.timeout.clone()),
            retries: t.retries.clone().or_else(|| m.retries.clone()),
            retry_delay: t.retry_delay.clone().or_else(|| m.retry_delay.clone()),
            interval_on_failure: t
                .interval_on_failure
                .clone()
                .or_else(|| m.interval_on_failure.clone()),
            ip_version: t.ip_version.clone().or_else(|| m.ip_version.clone()),
            addresses: t.addresses.clone().or_else(|| m.addresses.clone()),
            tcp: t.tcp.clone().or_else(|| m.tcp.clone()),
            tls: t.tls.clone().or_else(|| m.tls.clone()),
            http: t.http.clone().or_else(|| m.http.clone()),
            icmp: t.icmp.clone().or_else(|| m.icmp.clone()),
            dns: t.dns.clone().or_else(|| m.dns.clone()),
            assertions: t.assertions.clone().or_else(|| m.assertions.clone()),
            ..t.clone()
        };
        Some((std::borrow::Cow::Owned(merged), m.kind.value))
    }
}

/// A module as a target entry, pointed at a stand-in address that `/probe` replaces: an https
/// URL unless the module turns TLS off (HTTP/2 needs one), and for a dns module without a
/// name, one its record type can ask about.
fn stand_in_target(name: &str, m: &S<RawModule>) -> RawTarget {
    let at = m.referenced;
    let module = &m.value;
    let kind = module.kind.value;
    let tls_off = module
        .tls
        .as_ref()
        .is_some_and(|t| t.value.enabled == Some(false));
    let ptr = module.dns.as_ref().is_some_and(|d| {
        d.value
            .record_type
            .as_ref()
            .is_some_and(|r| r.value == crate::probe::dns::config::RawRecordType::Ptr)
    });
    let (host, port, url) = match kind {
        Kind::Tcp => (Some("localhost"), Some(1), None),
        Kind::Http if tls_off => (None, None, Some("http://localhost/")),
        Kind::Http => (None, None, Some("https://localhost/")),
        Kind::Icmp => (Some("localhost"), None, None),
        Kind::Dns if ptr => (Some("127.0.0.1"), None, None),
        Kind::Dns => (Some("localhost"), None, None),
    };
    RawTarget {
        name: stand_in(format!("module {name}"), at),
        kind: Some(module.kind.clone()),
        module: None,
        host: module
            .host
            .clone()
            .or_else(|| host.map(|h| stand_in(h.to_string(), at))),
        port: port.map(|p| stand_in(p, at)),
        url: url.map(|u| stand_in(u.to_string(), at)),
        interval: module.interval.clone(),
        timeout: module.timeout.clone(),
        retries: module.retries.clone(),
        retry_delay: module.retry_delay.clone(),
        interval_on_failure: module.interval_on_failure.clone(),
        ip_version: module.ip_version.clone(),
        addresses: module.addresses.clone(),
        labels: None,
        locations: None,
        tcp: module.tcp.clone(),
        tls: module.tls.clone(),
        http: module.http.clone(),
        icmp: module.icmp.clone(),
        dns: module.dns.clone(),
        assertions: module.assertions.clone(),
    }
}
