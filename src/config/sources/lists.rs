//! A source's lists read into targets: Prometheus' SD format (groups of `targets` with
//! `labels`), each target built as a config target that names the source's module. A list with
//! any mistake is not used; the source's last good list runs instead, and the mistakes are
//! reported as the source's, not as the config's.
//!
//! Labels of a group that start with `__` are not kept, as in Prometheus, but these say how the
//! group's targets run: `__meta_vantage_name` (the name; by default `SOURCE/TARGET`),
//! `__meta_vantage_locations` (locations, separated by commas) and `__param_module` (a module
//! of the config, instead of the source's, as blackbox_exporter's `module` parameter).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::format::{Counted, RawGroup, parse, spent};
use super::{ListState, Listed, Source, SourceInputs, SourceKind, SourceReport};
use crate::build::S;
use crate::build::error::ConfigError;
use crate::config::builder::{Builder, Entry, Inherit, Placed};
use crate::config::modules::TEMPLATE;
use crate::config::raw::{RawConfig, RawModule, RawSource, RawTarget};
use crate::probe::Kind;

const NAME_LABEL: &str = "__meta_vantage_name";
const LOCATIONS_LABEL: &str = "__meta_vantage_locations";
const MODULE_LABEL: &str = "__param_module";

/// A list built: its targets, and the names they took.
struct Built {
    placed: Placed,
    names: Vec<String>,
    count: usize,
}

impl Builder<'_> {
    /// Builds every source's list into `placed`, the names of targets built so far being
    /// `taken`; reports what each source gave.
    pub(in crate::config) fn sources(
        &mut self,
        raw: &RawConfig,
        inherit: &Inherit,
        inputs: &SourceInputs,
        taken: &mut HashSet<String>,
        placed: &mut Placed,
    ) -> Vec<super::SourceReport> {
        let defined = super::build(&mut self.cx, &raw.target_sources);
        let mut modules = raw.modules.clone();
        let mut reports = Vec::new();
        for (i, (entry, source)) in raw.target_sources.iter().zip(defined).enumerate() {
            let Some(source) = source else { continue };
            if let Some(template) = &entry.value.template {
                let key = format!("{TEMPLATE}{}", source.name);
                let path = format!("target_sources[{i}].template");
                // Built on its own first, as a module is, so that its mistakes are named once.
                if self
                    .module(&key, template, &path, inherit.defaults)
                    .is_none()
                {
                    continue;
                }
                modules.insert(key, (**template).clone());
            }
            let (report, built) =
                self.source(i, &entry.value, source, &modules, inherit, inputs, taken);
            if let Some(built) = built {
                taken.extend(built.names);
                placed.append(built.placed);
            }
            if let Some(report) = report {
                reports.push(report);
            }
        }
        reports
    }

    /// One source: its newest list, or its last good one when the newest has mistakes. A last
    /// good list that this config cannot build is the config's mistake (the reload is refused).
    #[allow(clippy::too_many_arguments)] // the source, and what the load has built so far
    fn source(
        &mut self,
        i: usize,
        raw: &RawSource,
        source: Arc<Source>,
        modules: &BTreeMap<String, S<RawModule>>,
        inherit: &Inherit,
        inputs: &SourceInputs,
        taken: &HashSet<String>,
    ) -> (Option<SourceReport>, Option<Built>) {
        let module = match &raw.template {
            Some(_) => format!("{TEMPLATE}{}", source.name),
            None => raw
                .module
                .as_ref()
                .map(|m| m.value.clone())
                .unwrap_or_default(),
        };
        if raw.template.is_none() && !modules.contains_key(&module) {
            let at = raw
                .module
                .as_ref()
                .map_or(raw.name.referenced, |m| m.referenced);
            self.cx.error(
                &at,
                format!("target_sources[{i}].module"),
                format!("unknown module {module:?}"),
            );
            return (None, None);
        }
        if inherit.broken.contains(&module) {
            return (None, None);
        }
        let newest = match &source.kind {
            SourceKind::File { patterns } => Some(self.read_files(patterns, source.from)),
            SourceKind::Http(_) => inputs
                .fetched
                .get(&source.name)
                .filter(|l| l.from == source.from)
                .map(|l| Ok(vec![l.clone()])),
        };
        let last_good = inputs
            .last_good
            .get(&source.name)
            .filter(|lists| lists.iter().all(|l| l.from == source.from));
        let list = ListOf {
            source: &source,
            module: &module,
            modules,
            taken,
        };
        let mut errors = Vec::new();
        if let Some(newest) = newest {
            match newest.and_then(|lists| {
                self.list(&list, &lists, inherit)
                    .map(|built| (built, lists))
            }) {
                Ok((built, lists)) => {
                    let report = SourceReport {
                        targets: built.count,
                        source,
                        state: ListState::Newest,
                        errors: Vec::new(),
                        good: Some(lists),
                    };
                    return (Some(report), Some(built));
                }
                Err(e) => errors = e,
            }
        }
        let (state, kept) = match last_good {
            Some(lists) => match self.list(&list, lists, inherit) {
                Ok(built) => (ListState::LastGood, Some(built)),
                Err(e) => {
                    let first = e.first().map_or_else(String::new, ToString::to_string);
                    self.cx.error(
                        &raw.name.referenced,
                        format!("target_sources[{i}]"),
                        format!(
                            "the source's newest list has mistakes, and its last good list no \
                             longer builds with this config: {first}"
                        ),
                    );
                    return (None, None);
                }
            },
            None => (ListState::Empty, None),
        };
        let report = SourceReport {
            targets: kept.as_ref().map_or(0, |b| b.count),
            source,
            state,
            errors,
            good: None,
        };
        (Some(report), kept)
    }

    /// The files of a `file_sd` source, each pattern expanded; an error for each file that
    /// cannot be read, or the lists.
    fn read_files(
        &mut self,
        patterns: &[std::path::PathBuf],
        from: u64,
    ) -> Result<Vec<Listed>, Vec<ConfigError>> {
        let mut paths = std::collections::BTreeSet::new();
        let mut errors = Vec::new();
        for pattern in patterns {
            match self.cx.expand(pattern) {
                // A file two patterns match is one list, read once.
                Ok(files) => paths.extend(files),
                Err(e) => errors.push(ConfigError::whole_file(
                    &pattern.display().to_string(),
                    format!("cannot list: {e}"),
                )),
            }
        }
        let mut lists = Vec::new();
        for path in paths {
            let origin = path.display().to_string();
            match self.cx.read_list(&path) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => lists.push(Listed {
                        origin,
                        text: text.into(),
                        from,
                    }),
                    Err(_) => errors.push(ConfigError::whole_file(&origin, "is not UTF-8")),
                },
                Err(e) => errors.push(ConfigError::whole_file(
                    &origin,
                    format!("cannot read: {e}"),
                )),
            }
        }
        if errors.is_empty() {
            Ok(lists)
        } else {
            Err(errors)
        }
    }

    /// Builds `lists` of one source, all or nothing.
    fn list(
        &mut self,
        list: &ListOf,
        lists: &[Listed],
        inherit: &Inherit,
    ) -> Result<Built, Vec<ConfigError>> {
        let mut groups = Vec::new();
        let mut errors = Vec::new();
        let max = list.source.max_targets;
        let mut count = 0;
        for listed in lists {
            match parse(listed, max - count, max) {
                Ok(parsed) => {
                    count += parsed.iter().map(|g| g.targets.value.len()).sum::<usize>();
                    groups.push((listed, parsed));
                }
                Err(e) => errors.push(e),
            }
            // Past the limit, every other file would only say so again.
            if spent() && !errors.is_empty() {
                break;
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let before = self.cx.error_count();
        let mut built = Built {
            placed: Placed::default(),
            names: Vec::new(),
            count,
        };
        let mut names: HashSet<String> = HashSet::new();
        for (listed, parsed) in &groups {
            self.cx.errors_in(Some(listed.origin.clone()));
            for (g, group) in parsed.iter().enumerate() {
                let Some(shared) = self.group(list, group, &format!("[{g}]")) else {
                    continue;
                };
                for (t, Counted(target)) in group.targets.value.iter().enumerate() {
                    let path = format!("[{g}].targets[{t}]");
                    let Some((entry, dns_server)) = self.entry(list, &shared, target, &path) else {
                        continue;
                    };
                    let name = &entry.name.value;
                    if list.taken.contains(name) || names.contains(name) {
                        self.cx.error(
                            &target.referenced,
                            &path,
                            format!(
                                "duplicate name {name:?}: another target has it (of the config, \
                                 this list or an earlier source); set {NAME_LABEL} to tell them apart"
                            ),
                        );
                        continue;
                    }
                    names.insert(name.clone());
                    let e = Entry {
                        raw: &entry,
                        at: target.referenced,
                        path: &path,
                        dns_server,
                    };
                    self.place(&e, list.modules, inherit, &mut built.placed);
                }
            }
        }
        self.cx.errors_in(None);
        let errors = self.cx.take_errors_since(before);
        if !errors.is_empty() {
            return Err(errors);
        }
        built.names = names.into_iter().collect();
        Ok(built)
    }

    /// What the targets of `group` (at `path`) share, worked out once for them all; `None`
    /// after reporting why they cannot run.
    fn group<'g>(&mut self, list: &ListOf, group: &'g RawGroup, path: &str) -> Option<Shared<'g>> {
        let label = |key: &str| group.labels.0.get(key);
        let chosen = label(MODULE_LABEL);
        let module = chosen.map_or_else(|| list.module.to_string(), |m| m.value.clone());
        // A template is its source's own: no list names it.
        let named = chosen.is_none() || !module.starts_with(TEMPLATE);
        let Some(m) = list.modules.get(&module).filter(|_| named) else {
            let at = chosen.map_or(group.targets.referenced, |m| m.referenced);
            self.cx.error(
                &at,
                format!("{path}.labels.{MODULE_LABEL}"),
                format!("unknown module {module:?}"),
            );
            return None;
        };
        let labels: BTreeMap<String, S<String>> = group
            .labels
            .0
            .iter()
            .filter(|(k, _)| !k.starts_with("__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let at = group.targets.referenced;
        Some(Shared {
            kind: m.value.kind.value,
            asks_name: m.value.host.is_some(),
            module,
            name: label(NAME_LABEL),
            locations: label(LOCATIONS_LABEL).map(|l| {
                let list = l.value.split(',').map(|s| s.trim().to_string()).collect();
                S::new(list, l.referenced)
            }),
            labels: (!labels.is_empty()).then(|| S::new(labels, at)),
        })
    }

    /// One listed target as a config entry that names its module; `None` after reporting why
    /// it cannot be one. A dns module that names its question takes the target as its server.
    fn entry(
        &mut self,
        list: &ListOf,
        group: &Shared,
        target: &S<String>,
        path: &str,
    ) -> Option<(RawTarget, Option<S<String>>)> {
        let at = target.referenced;
        let text = target.value.trim();
        let span = |v: String| S::new(v, at);
        let (mut host, mut port, mut url, mut dns_server) = (None, None, None, None);
        match group.kind {
            Kind::Http if text.contains("://") => url = Some(span(text.to_string())),
            Kind::Http => url = Some(span(format!("http://{text}"))),
            Kind::Tcp => match text.rsplit_once(':').map(|(h, p)| (h, p.parse::<i64>())) {
                Some((h, Ok(p))) => {
                    host = Some(span(
                        h.trim_start_matches('[').trim_end_matches(']').to_string(),
                    ));
                    port = Some(S::new(p, at));
                }
                _ => {
                    self.cx.error(
                        &at,
                        path,
                        format!("{text:?}: a tcp module's target is HOST:PORT"),
                    );
                    return None;
                }
            },
            Kind::Dns if group.asks_name => dns_server = Some(span(text.to_string())),
            Kind::Icmp | Kind::Dns => host = Some(span(text.to_string())),
        }
        // As Prometheus tells a target by its job and address: two sources may list the same.
        let name = group.name.map_or_else(
            || span(format!("{}/{text}", list.source.name)),
            Clone::clone,
        );
        let entry = RawTarget {
            name,
            kind: None,
            module: Some(span(group.module.clone())),
            host,
            port,
            url,
            interval: None,
            timeout: None,
            retries: None,
            retry_delay: None,
            interval_on_failure: None,
            ip_version: None,
            addresses: None,
            labels: group.labels.clone(),
            locations: group.locations.clone(),
            tcp: None,
            tls: None,
            http: None,
            icmp: None,
            dns: None,
            assertions: None,
        };
        Some((entry, dns_server))
    }
}

/// What a group's targets share.
struct Shared<'g> {
    module: String,
    kind: Kind,
    /// A dns module that names its question: the targets are servers.
    asks_name: bool,
    name: Option<&'g S<String>>,
    locations: Option<S<Vec<String>>>,
    labels: Option<S<BTreeMap<String, S<String>>>>,
}

/// A source's list being built: the source, the module its targets run, the modules (with the
/// source's template), and the names other targets took.
struct ListOf<'r> {
    source: &'r Source,
    module: &'r str,
    modules: &'r BTreeMap<String, S<RawModule>>,
    taken: &'r HashSet<String>,
}
