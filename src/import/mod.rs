//! `vantage import-blackbox`: a blackbox_exporter config (and optionally the Prometheus config
//! that drives it) converted into an `exporter.yml`. Every setting is converted, or named with
//! its file and line as not converted, never dropped without a word.
//!
//! A leaf: main calls it, and it reads only the names and parsers of the layers above.
//! `blackbox` (with `http`, `tcp`, `dns`) converts the modules, `shared` holds what those
//! share, `prometheus` finds the jobs' static targets, `allow` the `/probe` allow lists they
//! make, `node` is the located YAML tree both files are read into, `emit` writes the result.

mod allow;
mod blackbox;
mod dns;
mod emit;
mod findings;
mod http;
mod listings;
mod node;
mod prometheus;
mod shared;
mod tcp;

use std::collections::BTreeSet;
use std::time::Duration;

use allow::Allows;
use blackbox::{Module, Prober};
use emit::{Map, Out};
use findings::Findings;
pub use findings::{Item, Kind};
use listings::{Listed, Listing};
use prometheus::Target;

use crate::duration;
use crate::net;

/// vantage's default timeout of an `http_sd` poll.
const HTTP_SD_TIMEOUT: Duration = Duration::from_secs(10);

/// How much sooner than the scrape's timeout blackbox ends a probe (its `--timeout-offset`).
const TIMEOUT_OFFSET: Duration = Duration::from_millis(500);

/// A file to convert: its name (for findings) and its text.
pub struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

/// The written config, and what the conversion has to say about it.
pub struct Conversion {
    pub config: String,
    pub items: Vec<Item>,
}

impl Conversion {
    /// Whether every setting was converted (notes aside).
    pub fn complete(&self) -> bool {
        self.items.iter().all(|i| i.kind == Kind::Note)
    }
}

/// Converts `blackbox` and the static targets of `prometheus`'s blackbox jobs. `Err` when a
/// file is not YAML, or not the config it should be.
pub fn convert(blackbox: Source, prometheus: Option<Source>) -> Result<Conversion, String> {
    let mut findings = Findings::new(blackbox.file);
    let doc = node::parse(blackbox.text).map_err(|e| format!("{}: {e}", blackbox.file))?;
    let modules =
        blackbox::modules(&doc, &mut findings).map_err(|e| format!("{}: {e}", blackbox.file))?;
    let mut targets = Vec::new();
    let mut sources = Vec::new();
    let mut allows = Allows::new();
    if let Some(prometheus) = &prometheus {
        findings.set_file(prometheus.file);
        let doc = node::parse(prometheus.text).map_err(|e| format!("{}: {e}", prometheus.file))?;
        let jobs = prometheus::targets(&doc, &mut findings)
            .map_err(|e| format!("{}: {e}", prometheus.file))?;
        let mut names = BTreeSet::new();
        for target in &jobs.targets {
            let out = self::target(target, &modules, &mut names, &mut allows, &mut findings);
            if let Some(out) = out {
                targets.push(Out::Map(out));
            }
        }
        let mut source_names = BTreeSet::new();
        for listed in &jobs.listed {
            if let Some(out) = source(listed, &modules, &mut source_names, &mut findings) {
                sources.push(Out::Map(out));
            }
        }
    }
    findings.set_file(blackbox.file);
    let mut top = Map::new();
    let mut written = Map::new();
    let mut listless = Vec::new();
    for module in &modules {
        let mut out = module.out.clone();
        match allows.table(&module.name) {
            Some(allow) => {
                out.comment("whom /probe may reach with it: the static targets of its jobs");
                out.set("allow", Out::Map(allow));
            }
            None => {
                written.comment(&allow::missing_comment(if prometheus.is_some() {
                    "no /probe job of the Prometheus config probes a target with it"
                } else {
                    "no Prometheus config was given to take its targets from"
                }));
                listless.push(module);
            }
        }
        written.set(&module.name, Out::Map(out));
    }
    if let Some(first) = listless.first() {
        let names: Vec<&str> = listless.iter().map(|m| m.name.as_str()).collect();
        let (them, has) = if names.len() == 1 {
            ("it", "has")
        } else {
            ("them", "have")
        };
        findings.note(
            first.line,
            "modules",
            format!(
                "{} {has} no allow list, so /probe refuses {them} ({}): a comment above each \
                 shows the shape of one",
                names.join(", "),
                if prometheus.is_some() {
                    format!("no /probe job probes a target with {them}")
                } else {
                    "no Prometheus config was given to take targets from".to_string()
                }
            ),
        );
    }
    top.set("modules", Out::Map(written));
    top.set("targets", Out::Seq(targets));
    if !sources.is_empty() {
        top.set("target_sources", Out::Seq(sources));
    }
    let items = findings.into_items();
    let config = format!(
        "{}{}",
        header(blackbox.file, prometheus.as_ref().map(|p| p.file), &items),
        emit::document(&top)
    );
    Ok(Conversion { config, items })
}

/// The comment that opens the written config: where it came from, and what it lacks.
fn header(blackbox: &str, prometheus: Option<&str>, items: &[Item]) -> String {
    let from = match prometheus {
        Some(p) => format!("{blackbox} and {p}"),
        None => blackbox.to_string(),
    };
    let mut text = format!(
        "# Converted by `vantage import-blackbox` (vantage {}) from {from}.\n",
        env!("CARGO_PKG_VERSION")
    );
    let lost: Vec<&Item> = items
        .iter()
        .filter(|i| i.kind == Kind::NotConverted)
        .collect();
    if lost.is_empty() {
        text.push_str("# Every setting was converted.\n");
    } else {
        text.push_str("# Not converted (see the README's \"Moving from blackbox_exporter\"):\n");
        for item in lost {
            text.push_str(&format!("#   {item}\n"));
        }
    }
    text
}

/// One static target as a vantage target of its module, or `None` (reported).
fn target(
    target: &Target,
    modules: &[Module],
    names: &mut BTreeSet<String>,
    allows: &mut Allows,
    findings: &mut Findings,
) -> Option<Map> {
    let at = target.address.referenced.line();
    let address = target.address.value.trim();
    let Some(module) = modules.iter().find(|m| m.name == target.module.value) else {
        findings.skip(
            at,
            &target.key,
            format!(
                "its module {:?} is not in the blackbox config, or could not be converted",
                target.module.value
            ),
        );
        return None;
    };
    let mut out = Map::new();
    out.str("name", &unique(names, &format!("{}/{address}", target.job)));
    // A target may not add `dns.server` to its module's `dns` table: a dns target is the module
    // written out, with its server.
    if module.prober != Prober::Dns {
        out.str("module", &module.name);
    }
    match module.prober {
        Prober::Http if address.contains("://") => out.str("url", address),
        // Blackbox reads a target without a scheme as http.
        Prober::Http => out.str("url", &format!("http://{address}")),
        Prober::Tcp => match net::parse_host_port(address) {
            Ok((host, port)) => {
                out.str("host", &host.to_string());
                out.set("port", Out::Int(i64::from(port)));
            }
            Err(e) => {
                findings.skip(at, &target.key, format!("a tcp target is HOST:PORT: {e}"));
                return None;
            }
        },
        Prober::Icmp => out.str("host", address),
        Prober::Dns => {
            if let Err(e) = net::parse_dns_server(address) {
                findings.skip(
                    at,
                    &target.key,
                    format!("blackbox's dns target is the server, which vantage takes as an IP address: {e}"),
                );
                return None;
            }
            dns_target(&mut out, module, address);
        }
    }
    out.str("interval", &duration::format(target.interval));
    if let Some(timeout) = job_timeout(module, target.scrape_timeout) {
        out.str("timeout", &duration::format(timeout));
    } else if let (Prober::Dns, Some(own)) = (module.prober, module.timeout) {
        // Without a module to inherit it from.
        out.str("timeout", &duration::format(own));
    }
    if !target.labels.is_empty() {
        let mut labels = Map::new();
        for (k, v) in &target.labels {
            labels.str(k, v);
        }
        out.set("labels", Out::Map(labels));
    }
    allows.add(&module.name, module.prober, address);
    Some(out)
}

/// The timeout a job gives its module's probes when it is not the module's own: blackbox ends
/// a probe the offset before the scrape's timeout, or at the module's timeout when that is
/// sooner.
fn job_timeout(module: &Module, scrape_timeout: Duration) -> Option<Duration> {
    let bound = scrape_timeout.saturating_sub(TIMEOUT_OFFSET);
    let timeout = module.timeout.map_or(bound, |t| t.min(bound));
    (Some(timeout) != module.timeout && !timeout.is_zero()).then_some(timeout)
}

/// A job's listed targets as a target source: its module, written in place as the source's
/// `template` at the job's schedule, and where the list is. `None` (reported) without the
/// module.
fn source(
    listed: &Listed,
    modules: &[Module],
    names: &mut BTreeSet<String>,
    findings: &mut Findings,
) -> Option<Map> {
    let Some(module) = modules.iter().find(|m| m.name == listed.module.value) else {
        findings.skip(
            listed.line,
            &listed.key,
            format!(
                "its module {:?} is not in the blackbox config, or could not be converted",
                listed.module.value
            ),
        );
        return None;
    };
    let mut out = Map::new();
    out.str("name", &unique(names, &listed.job));
    out.comment(&format!(
        "module {} at job {}'s schedule; a group's __param_module picks another module",
        module.name, listed.job
    ));
    let mut template = module.out.clone();
    template.replace("interval", Out::Str(duration::format(listed.interval)));
    if let Some(timeout) = job_timeout(module, listed.scrape_timeout) {
        template.replace("timeout", Out::Str(duration::format(timeout)));
    }
    out.set("template", Out::Map(template));
    let mut sd = Map::new();
    match &listed.listing {
        Listing::Files(files) => {
            sd.set(
                "files",
                Out::Seq(files.iter().map(|f| Out::Str(f.clone())).collect()),
            );
            out.set("file_sd", Out::Map(sd));
            findings.note(
                listed.line,
                &listed.key,
                "its files are read relative to the folder of exporter.yml (Prometheus read them \
                 relative to prometheus.yml's): write them as absolute paths, or keep both \
                 files in one folder",
            );
        }
        Listing::Http {
            url,
            refresh_interval,
        } => {
            sd.str("url", url);
            if let Some(every) = refresh_interval {
                sd.str("refresh_interval", every);
                // vantage's poll timeout (10s unless set) must be shorter than the interval.
                if let Ok(every) = duration::parse(every)
                    && every <= HTTP_SD_TIMEOUT
                {
                    sd.str("timeout", &duration::format(every / 2));
                }
            }
            out.set("http_sd", Out::Map(sd));
        }
    }
    findings.note(
        listed.line,
        &listed.key,
        format!(
            "its targets run as target source {:?}; /probe's allow list for module {} does \
             not know them: extend it by hand to call /probe with them",
            listed.job, module.name
        ),
    );
    Some(out)
}

/// A dns target written whole: the module's `type`, `host`, `ip_version` and `dns` table, with
/// `server` first in that table.
fn dns_target(out: &mut Map, module: &Module, server: &str) {
    out.comment(&format!("as module {}, with its server", module.name));
    out.str("type", Prober::Dns.as_str());
    for key in ["host", "ip_version"] {
        if let Some(value) = module.out.get(key) {
            out.set(key, value.clone());
        }
    }
    let mut dns = Map::new();
    dns.str("server", server);
    if let Some(Out::Map(table)) = module.out.get("dns") {
        for (k, v) in table.pairs() {
            dns.set(k, v.clone());
        }
    }
    out.set("dns", Out::Map(dns));
}

/// `name`, or `name (2)`, `name (3)`, ... when taken.
fn unique(names: &mut BTreeSet<String>, name: &str) -> String {
    let mut candidate = name.to_string();
    let mut n = 1;
    while !names.insert(candidate.clone()) {
        n += 1;
        candidate = format!("{name} ({n})");
    }
    candidate
}

#[cfg(test)]
mod tests;
