//! What the http, tcp, dns and icmp modules share: the IP protocol as `ip_version`,
//! `tls_config` as the `tls` table, and the source address vantage does not set.

use super::emit::{Map, Out};
use super::findings::Findings;
use super::node::{self, Node, Table, line};
use crate::build::S;

/// `preferred_ip_protocol` and `ip_protocol_fallback` as vantage's `ip_version`, set on `out`
/// unless it is vantage's `auto` (IPv4 first, IPv6 when the name has no IPv4 address).
pub fn ip_version(settings: &mut Table, out: &mut Map, findings: &mut Findings) {
    let preferred = settings.take("preferred_ip_protocol");
    let fallback = settings.take("ip_protocol_fallback");
    let preferred_text = match preferred {
        Some(p) => match node::text(p, &settings.key("preferred_ip_protocol"), findings) {
            Some(text) => Some(text),
            None => return,
        },
        None => None,
    };
    let fallback_value = match fallback {
        Some(f) => match node::boolean(f, &settings.key("ip_protocol_fallback"), findings) {
            Some(b) => b,
            None => return,
        },
        None => true,
    };
    // Blackbox prefers IPv6 when nothing is written.
    let family = match preferred_text.as_deref() {
        None | Some("ip6" | "ipv6") => 6,
        Some("ip4" | "ipv4") => 4,
        Some(other) => {
            let p = preferred.expect("a text comes from a node");
            findings.skip(
                line(p),
                &settings.key("preferred_ip_protocol"),
                format!("{other:?} is not ip4 or ip6"),
            );
            return;
        }
    };
    match (family, fallback_value) {
        (4, false) => out.str("ip_version", "4"),
        (_, false) => out.str("ip_version", "6"),
        (4, true) => {}
        (_, true) => {
            if let Some(p) = preferred {
                findings.skip(
                    line(p),
                    &settings.key("preferred_ip_protocol"),
                    "vantage has no IPv6-first choice: its `auto` tries IPv4 first, then IPv6 \
                     (write ip_version: 6 for IPv6 only)",
                );
            }
        }
    }
}

/// Blackbox's `tls_config` as vantage's `tls` table.
pub fn tls_config(node: &S<Node>, path: &str, findings: &mut Findings) -> Map {
    let mut tls = Map::new();
    let Some(mut table) = Table::of(node, path, findings) else {
        return tls;
    };
    if let Some(skip) = table.take("insecure_skip_verify")
        && node::boolean(skip, &table.key("insecure_skip_verify"), findings) == Some(true)
    {
        tls.set("verify", Out::Bool(false));
    }
    for key in ["ca_file", "cert_file", "key_file"] {
        if let Some(value) = table.take(key)
            && let Some(file) = node::text(value, &table.key(key), findings)
        {
            if !file.starts_with('/') {
                findings.note(
                    line(value),
                    &table.key(key),
                    "blackbox read this relative path from its working directory; vantage \
                     reads it from the folder of exporter.yml",
                );
            }
            tls.str(key, &file);
        }
    }
    if let Some(value) = table.take("server_name")
        && let Some(name) = node::text(value, &table.key("server_name"), findings)
        && !name.is_empty()
    {
        tls.str("server_name", &name);
    }
    if let Some(value) = table.take("min_version")
        && let Some(version) = node::text(value, &table.key("min_version"), findings)
    {
        match version.as_str() {
            "TLS12" => tls.str("min_version", "TLSv1.2"),
            "TLS13" => tls.str("min_version", "TLSv1.3"),
            "TLS10" | "TLS11" => findings.skip(
                line(value),
                &table.key("min_version"),
                "vantage never offers TLS below 1.2, so its minimum is already TLSv1.2",
            ),
            other => findings.skip(
                line(value),
                &table.key("min_version"),
                format!("{other:?} is not TLS10, TLS11, TLS12 or TLS13"),
            ),
        }
    }
    table.finish(
        findings,
        &[
            (
                "max_version",
                "vantage offers TLS 1.2 and 1.3 and has no upper bound",
            ),
            (
                "ca",
                "vantage reads the CA from a file: save it and name it in ca_file",
            ),
            (
                "cert",
                "vantage reads the client certificate from a file: cert_file",
            ),
            ("key", "vantage reads the client key from a file: key_file"),
            (
                "key_file_secret",
                "vantage reads the client key from key_file",
            ),
        ],
    );
    tls
}

/// Keys that vantage's probes have no counterpart for, in every prober's table.
pub const SOURCE_IP: (&str, &str) = (
    "source_ip_address",
    "vantage lets the kernel pick the source address",
);
