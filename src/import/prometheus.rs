//! The blackbox jobs of a Prometheus config: each `scrape_configs` job that scrapes `/probe`
//! with a `module` parameter, its `static_configs` targets and labels, the standard three
//! relabelling rules that hand the address to blackbox as `target`, and its scrape interval
//! and timeout, which become the targets' schedule; and the lists its `file_sd_configs` and
//! `http_sd_configs` name (`listings`).

use std::time::Duration;

use super::findings::Findings;
use super::listings::{Listed, listings as listed};
use super::node::{self, Node, Table, line};
use crate::build::S;
use crate::duration;

/// Prometheus' defaults when neither the job nor `global` sets them.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A job's keys that configure how Prometheus reached blackbox_exporter, not what it probed.
const EXPORTER_SIDE: [&str; 12] = [
    "scheme",
    "honor_labels",
    "honor_timestamps",
    "track_timestamps_staleness",
    "scrape_protocols",
    "enable_compression",
    "basic_auth",
    "authorization",
    "tls_config",
    "follow_redirects",
    "enable_http2",
    "proxy_url",
];

/// One static target of a blackbox job.
#[derive(Debug)]
pub struct Target {
    /// As Prometheus hands it to blackbox: a URL, `host:port`, a host or a DNS server.
    pub address: S<String>,
    /// Where it was written, as `scrape_configs.blackbox.static_configs[0].targets[1]`.
    pub key: String,
    pub module: S<String>,
    pub labels: Vec<(String, String)>,
    pub job: String,
    pub interval: Duration,
    /// The scrape's timeout, which bounds blackbox's.
    pub scrape_timeout: Duration,
}

/// What the blackbox jobs of a Prometheus config probe: their static targets, and where they
/// list more.
#[derive(Debug, Default)]
pub struct Jobs {
    pub targets: Vec<Target>,
    pub listed: Vec<Listed>,
}

/// The static targets and the listings of every blackbox job in `doc`; `Err` when it is not a
/// Prometheus config at all.
pub fn targets(doc: &S<Node>, findings: &mut Findings) -> Result<Jobs, String> {
    let Node::Map(entries) = &doc.value else {
        return Err(
            "it is not a Prometheus config: expected a mapping with `scrape_configs`".into(),
        );
    };
    let mut interval = (DEFAULT_INTERVAL, "Prometheus' default");
    let mut timeout = DEFAULT_TIMEOUT;
    let global = entries.iter().find(|(k, _)| k.value == "global");
    if let Some((_, global)) = global
        && let Node::Map(settings) = &global.value
    {
        for (key, value) in settings {
            let path = format!("global.{}", key.value);
            match key.value.as_str() {
                "scrape_interval" => {
                    if let Some(global) = schedule(value, &path, findings) {
                        interval = (global, "global");
                    }
                }
                "scrape_timeout" => timeout = schedule(value, &path, findings).unwrap_or(timeout),
                _ => {}
            }
        }
    }
    let Some((_, jobs)) = entries.iter().find(|(k, _)| k.value == "scrape_configs") else {
        return Err("it is not a Prometheus config: it has no `scrape_configs`".into());
    };
    let mut found = Jobs::default();
    for (i, job) in node::list(jobs, "scrape_configs", findings)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let defaults = (interval, timeout);
        if let Some(mut table) = Table::of(job, &format!("scrape_configs[{i}]"), findings) {
            self::job(&mut table, defaults, findings, &mut found);
        }
    }
    Ok(found)
}

fn schedule(node: &S<Node>, path: &str, findings: &mut Findings) -> Option<Duration> {
    let text = node::text(node, path, findings)?;
    duration::parse(&text)
        .map_err(|e| findings.skip(line(node), path, e))
        .ok()
}

/// One scrape config: its targets and listings into `found` when it is a blackbox job, else
/// nothing (with a note).
fn job(
    table: &mut Table,
    defaults: ((Duration, &str), Duration),
    findings: &mut Findings,
    found: &mut Jobs,
) {
    let name = table
        .take("job_name")
        .and_then(|n| node::text(n, &table.key("job_name"), findings))
        .unwrap_or_default();
    let metrics_path = table
        .take("metrics_path")
        .and_then(|p| node::text(p, &table.key("metrics_path"), findings));
    if metrics_path.as_deref() != Some("/probe") {
        findings.note(
            table.line,
            &table.path,
            format!("job {name:?} does not scrape /probe: not a blackbox job, left as it is"),
        );
        table.rest();
        return;
    }
    table.path = format!("scrape_configs.{name}");
    let Some(module) = module(table, findings) else {
        table.rest();
        return;
    };
    let (interval, interval_from) = match table.take("scrape_interval") {
        Some(i) => match schedule(i, &table.key("scrape_interval"), findings) {
            Some(own) => (own, "the job's"),
            None => defaults.0,
        },
        None => defaults.0,
    };
    let scrape_timeout = match table.take("scrape_timeout") {
        Some(t) => schedule(t, &table.key("scrape_timeout"), findings).unwrap_or(defaults.1),
        None => defaults.1,
    }
    .min(interval);
    findings.note(
        table.line,
        &table.path,
        format!(
            "scrape_interval {} ({interval_from}): its targets run every {} in vantage, \
             scrape_timeout {} bounds their timeout",
            duration::format(interval),
            duration::format(interval),
            duration::format(scrape_timeout)
        ),
    );
    let relabelled = table
        .take("relabel_configs")
        .is_some_and(|rules| relabelling(rules, &table.key("relabel_configs"), findings));
    let statics = table.take("static_configs");
    let mut listings = Vec::new();
    for sd in ["file_sd_configs", "http_sd_configs"] {
        let at = table.line_of(sd);
        if let Some(node) = table.take(sd) {
            let at = at.unwrap_or_else(|| line(node));
            listings.extend(listed(sd, (node, at), &table.key(sd), findings));
        }
    }
    for (key, _, at) in table.rest() {
        let path = table.key(key);
        if EXPORTER_SIDE.contains(&key) {
            findings.note(
                at,
                &path,
                "how Prometheus reached blackbox_exporter: give the job that scrapes vantage its own",
            );
        } else if key.ends_with("_sd_configs") {
            findings.skip(
                at,
                &path,
                "vantage reads targets from files (file_sd) and HTTP (http_sd) only: have \
                 this discovery write a file SD list, or list the targets in static_configs",
            );
        } else if key == "metric_relabel_configs" {
            findings.skip(
                at,
                &path,
                "vantage's series are its own: relabel them in the job that scrapes vantage",
            );
        } else {
            findings.skip(at, &path, "a key this importer does not know");
        }
    }
    if !relabelled {
        findings.skip(
            table.line,
            &table.path,
            "without the rule that copies __address__ to __param_target, blackbox gets no \
             target: the job's targets are left out",
        );
        return;
    }
    for (line, key, listing) in listings {
        found.listed.push(Listed {
            job: name.clone(),
            module: module.clone(),
            interval,
            scrape_timeout,
            line,
            key,
            listing,
        });
    }
    let Some(statics) = statics else {
        return;
    };
    let targets = &mut found.targets;
    let key = table.key("static_configs");
    for (i, group) in node::list(statics, &key, findings)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let Some(mut group) = Table::of(group, &format!("{key}[{i}]"), findings) else {
            continue;
        };
        let (labels, group_module) = labels(&mut group, findings);
        let addresses = group
            .take("targets")
            .and_then(|t| node::texts(t, &group.key("targets"), findings))
            .unwrap_or_default();
        let targets_key = group.key("targets");
        group.finish(findings, &[]);
        for (j, address) in addresses.into_iter().enumerate() {
            targets.push(Target {
                address,
                key: format!("{targets_key}[{j}]"),
                module: group_module.clone().unwrap_or_else(|| module.clone()),
                labels: labels.clone(),
                job: name.clone(),
                interval,
                scrape_timeout,
            });
        }
    }
}

/// `params.module`: the job's one module (blackbox takes the first of several).
fn module(table: &mut Table, findings: &mut Findings) -> Option<S<String>> {
    let Some(params) = table.take("params") else {
        findings.skip(
            table.line,
            &table.path,
            "no params.module: vantage needs the module each target runs",
        );
        return None;
    };
    let mut params = Table::of(params, &table.key("params"), findings)?;
    let modules = params
        .take("module")
        .and_then(|m| node::texts(m, &params.key("module"), findings))
        .unwrap_or_default();
    params.finish(findings, &[]);
    let Some((first, rest)) = modules.split_first() else {
        findings.skip(
            params.line,
            &params.key("module"),
            "no module: vantage needs the module each target runs",
        );
        return None;
    };
    for (i, other) in rest.iter().enumerate() {
        findings.skip(
            other.referenced.line(),
            &format!("{}[{}]", params.key("module"), i + 1),
            "blackbox runs the first module only, and so does the converted config",
        );
    }
    Some(first.clone())
}

/// A group's `labels`: the static ones, and `__param_module`, which picks the group's module.
fn labels(
    group: &mut Table,
    findings: &mut Findings,
) -> (Vec<(String, String)>, Option<S<String>>) {
    let mut labels = Vec::new();
    let mut module = None;
    let Some(written) = group.take("labels") else {
        return (labels, module);
    };
    let Some(mut table) = Table::of(written, &group.key("labels"), findings) else {
        return (labels, module);
    };
    for (name, value, _) in table.rest() {
        let key = table.key(name);
        let Some(text) = node::text(value, &key, findings) else {
            continue;
        };
        if name == "__param_module" {
            module = Some(S::new(text, value.referenced));
        } else if let Some(problem) = crate::config::label_name_problem(name, name.chars().count())
        {
            findings.skip(line(value), &key, format!("vantage refuses it: {problem}"));
        } else {
            labels.push((name.to_string(), text));
        }
    }
    (labels, module)
}

/// Whether `relabel_configs` are the standard rules, with the one that hands the address to
/// blackbox; every other rule is named as not converted.
fn relabelling(rules: &S<Node>, key: &str, findings: &mut Findings) -> bool {
    let mut target = false;
    for (i, rule) in node::list(rules, key, findings)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let path = format!("{key}[{i}]");
        let Some(mut table) = Table::of(rule, &path, findings) else {
            continue;
        };
        let mut get = |k: &str| {
            table
                .take(k)
                .and_then(|v| node::texts(v, &format!("{path}.{k}"), findings))
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.value)
                .collect::<Vec<String>>()
        };
        let sources = get("source_labels");
        let target_label = get("target_label").concat();
        let action = get("action").concat();
        let regex = get("regex").concat();
        let replacement = get("replacement").concat();
        get("separator");
        let leftover = !table.rest().is_empty();
        let plain = matches!(action.as_str(), "" | "replace")
            && matches!(regex.as_str(), "" | "(.*)" | "^(.*)$")
            && !leftover;
        let copies = plain && matches!(replacement.as_str(), "" | "$1" | "${1}");
        match (sources.as_slice(), target_label.as_str()) {
            ([source], "__param_target") if copies && *source == "__address__" => target = true,
            ([source], "instance") if copies && *source == "__param_target" => {
                findings.note(
                    line(rule),
                    &path,
                    "instance was the probed target; in vantage the target's series carry \
                     name and target labels, and instance names vantage",
                );
            }
            ([], "__address__") if plain => {
                findings.note(
                    line(rule),
                    &path,
                    format!(
                        "blackbox_exporter's address {replacement:?}: scrape vantage there \
                         instead (at /metrics)"
                    ),
                );
            }
            _ => findings.skip(
                line(rule),
                &path,
                "not one of the standard rules (__address__ to __param_target, __param_target \
                 to instance, the exporter's address to __address__)",
            ),
        }
    }
    target
}

#[cfg(test)]
#[path = "prometheus_tests.rs"]
mod tests;
