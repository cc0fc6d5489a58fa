//! The TLS families: handshake, version (with cipher and key exchange), a retried key share,
//! the facts of every presented certificate, the expiry of the presented and of the verified
//! chain, and the verdicts.
//!
//! They live with TLS rather than in `probe/tcp` because tcp and http targets both have them,
//! from the same [`TlsFacts`]: this is the one module both probe types already build on, and
//! the families are rendered over every target, whichever type found the facts.

use std::fmt;

use crate::exposition::Encoder;
use prometheus_client::metrics::MetricType;

use super::cert::CertFacts;
use super::{TlsFacts, TlsVersion, Verification};
use crate::family::{Row, UNLABELLED, bounded, gauge, info, series};
use crate::outcome::Seen;

/// Renders the TLS families over `rows`, one per target with a run, in their fixed order.
pub fn families(encoder: &mut Encoder, rows: &[Row<'_, Seen<'_, TlsFacts>>]) -> fmt::Result {
    gauge(
        encoder,
        rows,
        "probe_tls_handshake_duration_seconds",
        "TLS handshake in the last run, after connect (and STARTTLS)",
        |s| s.trace.phases.tls.get().map(|d| d.as_secs_f64()),
    )?;
    info(
        encoder,
        rows,
        "probe_tls_version",
        "Negotiated TLS version, cipher suite and key-exchange group",
        |s| {
            let Some(f) = s.facts else { return Vec::new() };
            match (f.version, &f.cipher) {
                (Some(version), Some(cipher)) => vec![vec![
                    ("version", version.as_str().to_string()),
                    ("cipher", cipher.clone()),
                    ("key_exchange", f.key_exchange.clone().unwrap_or_default()),
                ]],
                _ => Vec::new(),
            }
        },
    )?;
    gauge(
        encoder,
        rows,
        "probe_tls_hello_retry",
        "1 if the server asked for another key share (a HelloRetryRequest, one more round trip) in the last completed handshake",
        |s| {
            let f = s.facts?;
            f.version?;
            Some(f64::from(u8::from(f.hello_retry)))
        },
    )?;
    info(
        encoder,
        rows,
        "probe_tls_cert",
        "One per presented certificate, leaf first (cert_index 0), verified or not",
        |s| {
            let Some(f) = s.facts else { return Vec::new() };
            f.chain
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    vec![
                        ("cert_index", i.to_string()),
                        ("subject", bounded(&c.subject)),
                        ("issuer", bounded(&c.issuer)),
                        ("serial", bounded(&c.serial)),
                        ("dns_names", bounded(&c.names.join(","))),
                        ("sha256", c.sha256.clone()),
                    ]
                })
                .collect()
        },
    )?;
    for (name, help, bound) in [
        (
            "probe_tls_cert_not_before_timestamp_seconds",
            "Start of each presented certificate's validity",
            (|c| c.not_before) as fn(&CertFacts) -> Option<i64>,
        ),
        (
            "probe_tls_cert_not_after_timestamp_seconds",
            "End of each presented certificate's validity",
            |c| c.not_after,
        ),
    ] {
        series(encoder, rows, name, help, MetricType::Gauge, |s| {
            let Some(f) = s.facts else { return Vec::new() };
            f.chain
                .iter()
                .enumerate()
                .filter_map(|(i, c)| Some((vec![("cert_index", i.to_string())], bound(c)? as f64)))
                .collect()
        })?;
    }
    gauge(
        encoder,
        rows,
        "probe_tls_cert_expires_in_seconds",
        "Seconds from the last run to the earliest expiry in the presented chain; negative once expired",
        |s| Some(s.facts?.expires_in(s.finished_at)? as f64),
    )?;
    gauge(
        encoder,
        rows,
        "probe_ssl_earliest_cert_expiry",
        "Earliest expiry in the presented chain, as a Unix timestamp (blackbox_exporter's name)",
        |s| Some(s.facts?.earliest_expiry()?.1 as f64),
    )?;
    gauge(
        encoder,
        rows,
        "probe_ssl_last_chain_expiry_timestamp_seconds",
        "Earliest expiry over the verified chain (leaf to trusted root, the root counted when its certificate is known), as a Unix timestamp; absent when no chain verifies (blackbox_exporter's name)",
        |s| Some(s.facts?.verified_expiry()?.not_after as f64),
    )?;
    gauge(
        encoder,
        rows,
        "probe_tls_cert_expiring",
        "1 if the chain's expiry (the verified chain's, else the presented one's) is within the target's alert_before_expiry or past; present for targets that set it",
        |s| Some(f64::from(u8::from(s.facts?.expiring(s.finished_at)?))),
    )?;
    let verified = |s: &Seen<'_, TlsFacts>, part: fn(&Verification) -> bool| {
        s.facts?
            .verification
            .as_ref()
            .map(|v| f64::from(u8::from(part(v))))
    };
    gauge(
        encoder,
        rows,
        "probe_tls_chain_valid",
        "1 if the presented chain verifies to a trusted root, whatever `verify` says",
        |s| verified(s, |v| v.chain.is_ok()),
    )?;
    info(
        encoder,
        rows,
        "probe_tls_chain_error",
        "Why the presented chain does not verify (the failure reason), whatever `verify` says; absent while it verifies",
        |s| match s.facts.and_then(|f| f.verification.as_ref()) {
            Some(Verification { chain: Err(f), .. }) => {
                vec![vec![("reason", f.reason.to_string())]]
            }
            _ => Vec::new(),
        },
    )?;
    gauge(
        encoder,
        rows,
        "probe_tls_hostname_valid",
        "1 if the leaf certificate is valid for the server name, whatever `verify` says",
        |s| verified(s, |v| v.hostname.is_ok()),
    )
}

/// blackbox_exporter's TLS families for a handshake that completed and was accepted: the
/// earliest expiry presented, the verified chain's expiry (absent when none verified, where
/// blackbox writes the year 1), the version in Go's spelling, and the leaf's identity.
pub fn blackbox(encoder: &mut Encoder, facts: &TlsFacts) -> fmt::Result {
    let rows = [(UNLABELLED, facts)];
    gauge(
        encoder,
        &rows,
        "probe_ssl_earliest_cert_expiry",
        "Earliest expiry in the presented chain, as a Unix timestamp",
        |f| Some(f.earliest_expiry()?.1 as f64),
    )?;
    gauge(
        encoder,
        &rows,
        "probe_ssl_last_chain_expiry_timestamp_seconds",
        "Earliest expiry over the verified chain, as a Unix timestamp; absent when no chain verifies",
        |f| Some(f.verified_expiry()?.not_after as f64),
    )?;
    // Gauges at 1, as blackbox_exporter's are: an info family would be named without the
    // `_info` in OpenMetrics, which promtool and blackbox's users do not expect.
    series(
        encoder,
        &rows,
        "probe_tls_version_info",
        "The negotiated TLS version, spelled as blackbox_exporter does",
        MetricType::Gauge,
        |f| match f.version {
            Some(v) => vec![(vec![("version", go_version(v).to_string())], 1.0)],
            None => Vec::new(),
        },
    )?;
    series(
        encoder,
        &rows,
        "probe_ssl_last_chain_info",
        "The leaf certificate: its fingerprint, subject, issuer and DNS names",
        MetricType::Gauge,
        |f| {
            let Some(leaf) = f.chain.first() else {
                return Vec::new();
            };
            // DNS names only, as Go's DNSNames: vantage's list puts IP addresses after them.
            let dns: Vec<&str> = leaf
                .names
                .iter()
                .filter(|n| n.parse::<std::net::IpAddr>().is_err())
                .map(String::as_str)
                .collect();
            let labels = vec![
                ("fingerprint_sha256", leaf.sha256.clone()),
                ("subject", bounded(&leaf.subject_go)),
                ("issuer", bounded(&leaf.issuer_go)),
                ("subjectalternative", bounded(&dns.join(","))),
            ];
            vec![(labels, 1.0)]
        },
    )
}

/// A TLS version as Go's `crypto/tls` names it in blackbox_exporter: `TLS 1.3`.
pub fn go_version(version: TlsVersion) -> &'static str {
    match version {
        TlsVersion::Tls12 => "TLS 1.2",
        TlsVersion::Tls13 => "TLS 1.3",
    }
}
