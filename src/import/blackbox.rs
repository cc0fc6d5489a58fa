//! blackbox_exporter's `modules` as vantage modules: the keys every module has (`prober`,
//! `timeout`), the ones several probers share (the IP protocol, `tls_config`), and icmp's;
//! the http, tcp and dns tables have files of their own.

use std::time::Duration;

use super::emit::{Map, Out};
use super::findings::Findings;
use super::node::{self, Node, Table, line};
use super::shared::{SOURCE_IP, ip_version};
use super::{dns, http, tcp};
use crate::build::S;
use crate::duration;

/// A blackbox prober that vantage has a type for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prober {
    Http,
    Tcp,
    Icmp,
    Dns,
}

impl Prober {
    pub fn as_str(self) -> &'static str {
        match self {
            Prober::Http => "http",
            Prober::Tcp => "tcp",
            Prober::Icmp => "icmp",
            Prober::Dns => "dns",
        }
    }

    fn parse(text: &str) -> Option<Prober> {
        [Prober::Http, Prober::Tcp, Prober::Icmp, Prober::Dns]
            .into_iter()
            .find(|p| p.as_str() == text)
    }
}

/// vantage's interval where none is written, which a module's timeout must be shorter than.
const VANTAGE_INTERVAL: Duration = Duration::from_secs(30);
/// Prometheus' scrape interval where none is written.
const PROMETHEUS_INTERVAL: Duration = Duration::from_secs(60);

/// One blackbox module, converted.
#[derive(Debug)]
pub struct Module {
    pub name: String,
    /// Where the module is written in blackbox.yml.
    pub line: u64,
    pub prober: Prober,
    /// The module as vantage's `modules` table writes it.
    pub out: Map,
    /// The module's own timeout, which a scrape's timeout may shorten.
    pub timeout: Option<Duration>,
}

/// Keys of a module that vantage has nothing for, and why.
const MODULE_KEYS: [(&str, &str); 0] = [];

/// Probers blackbox has and vantage does not.
const OTHER_PROBERS: [(&str, &str); 3] = [
    ("grpc", "vantage has no gRPC health check"),
    ("unix", "vantage probes no Unix sockets"),
    ("websocket", "vantage has no WebSocket probe"),
];

/// Every module of a blackbox.yml, converted as far as vantage allows; `Err` when the file
/// is not a blackbox config at all.
pub fn modules(doc: &S<Node>, findings: &mut Findings) -> Result<Vec<Module>, String> {
    let Node::Map(_) = &doc.value else {
        return Err(
            "it is not a blackbox_exporter config: expected a mapping with `modules`".into(),
        );
    };
    let mut top = Table::of(doc, "", findings).ok_or("not a mapping")?;
    let Some(modules) = top.take("modules") else {
        return Err("it is not a blackbox_exporter config: it has no `modules`".into());
    };
    top.path = String::new();
    for (key, _, at) in top.rest() {
        findings.skip(at, key, "not a key of blackbox.yml that vantage knows");
    }
    let Node::Map(entries) = &modules.value else {
        return Err(format!(
            "line {}: `modules` must be a mapping of module names to modules",
            line(modules)
        ));
    };
    Ok(entries
        .iter()
        .filter_map(|(name, module)| convert(&name.value, module, findings))
        .collect())
}

/// One module, or `None` (reported) when it cannot be converted at all.
fn convert(name: &str, module: &S<Node>, findings: &mut Findings) -> Option<Module> {
    let path = format!("modules.{name}");
    let mut table = Table::of(module, &path, findings)?;
    let Some(prober_node) = table.take("prober") else {
        findings.skip(table.line, &path, "the module has no `prober`");
        return None;
    };
    let prober_text = node::text(prober_node, &table.key("prober"), findings)?;
    let Some(prober) = Prober::parse(&prober_text) else {
        let why = OTHER_PROBERS
            .iter()
            .find(|(p, _)| *p == prober_text)
            .map_or("not a prober vantage knows", |(_, why)| why);
        findings.skip(
            line(prober_node),
            &table.key("prober"),
            format!("prober {prober_text:?}: {why}; the module and its targets are left out"),
        );
        return None;
    };
    let mut out = Map::new();
    out.str("type", prober.as_str());
    let timeout = table
        .take("timeout")
        .and_then(|t| module_timeout(t, &table.key("timeout"), findings));
    if let Some(timeout) = timeout {
        out.str("timeout", &duration::format(timeout));
        // vantage checks a module's timeout against its interval, 30s unless set; blackbox
        // had no interval of its own (the scrape's was), so give a long module Prometheus'
        // default one. Targets set their job's interval over it.
        if timeout >= VANTAGE_INTERVAL {
            let interval = PROMETHEUS_INTERVAL.max(timeout + Duration::from_secs(1));
            out.str("interval", &duration::format(interval));
            findings.note(
                table.line_of("timeout").unwrap_or(table.line),
                &table.key("timeout"),
                format!(
                    "longer than vantage's default interval of 30s: the module runs every {} \
                     where no job's scrape_interval says otherwise",
                    duration::format(interval)
                ),
            );
        }
    }
    let mut module = Module {
        name: name.to_string(),
        line: table.line,
        prober,
        out,
        timeout,
    };
    let own = table.take(prober.as_str());
    let mut settings = match own {
        Some(own) => Table::of(own, &table.key(prober.as_str()), findings)?,
        None => Table::of(&EMPTY, &table.key(prober.as_str()), findings)?,
    };
    match prober {
        Prober::Http => http::convert(&mut settings, &mut module.out, findings),
        Prober::Tcp => tcp::convert(&mut settings, &mut module.out, findings),
        Prober::Icmp => icmp(&mut settings, &mut module.out, findings),
        Prober::Dns => dns::convert(&mut settings, &mut module.out, findings),
    }
    // Tables of other probers are ignored by blackbox too, but they were written for a reason.
    for other in ["http", "tcp", "icmp", "dns", "grpc"] {
        if other == prober.as_str() {
            continue;
        }
        if let Some(value) = table.take(other) {
            findings.skip(
                table.line_of(other).unwrap_or(line(value)),
                &table.key(other),
                format!(
                    "the module's prober is {}, which does not read this table",
                    prober.as_str()
                ),
            );
        }
    }
    table.finish(findings, &MODULE_KEYS);
    if prober == Prober::Dns && !module.out.has("host") {
        return None;
    }
    Some(module)
}

/// An empty mapping, for a module without its prober's table.
static EMPTY: S<Node> = S {
    value: Node::Map(Vec::new()),
    referenced: crate::build::Location::UNKNOWN,
};

fn module_timeout(node: &S<Node>, key: &str, findings: &mut Findings) -> Option<Duration> {
    let text = node::text(node, key, findings)?;
    match duration::parse(&text) {
        Ok(d) if d.is_zero() => None,
        Ok(d) => Some(d),
        Err(e) => {
            findings.skip(line(node), key, e);
            None
        }
    }
}

fn icmp(settings: &mut Table, out: &mut Map, findings: &mut Findings) {
    ip_version(settings, out, findings);
    let mut icmp = Map::new();
    if let Some(size) = settings.take("payload_size") {
        match size.value {
            Node::Int(n) => icmp.set("payload_size", Out::Int(n)),
            _ => findings.skip(
                line(size),
                &settings.key("payload_size"),
                "expected a number",
            ),
        }
    }
    if !icmp.is_empty() {
        out.set("icmp", Out::Map(icmp));
    }
    settings.finish(
        findings,
        &[
            SOURCE_IP,
            (
                "dont_fragment",
                "vantage does not set the Don't Fragment bit on its echoes",
            ),
            ("ttl", "vantage sends its echoes with the system's TTL"),
        ],
    );
}

#[cfg(test)]
#[path = "blackbox_tests.rs"]
mod tests;
