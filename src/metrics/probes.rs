//! Probe series, rendered at scrape time from the latest run of every target.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::probe::Phases;
use crate::probe::dns::DnsFacts;
use crate::probe::http::HttpFacts;
use crate::probe::icmp::IcmpFacts;
use crate::store::{Entry, Store};
use crate::tls::cert::CertFacts;
use crate::tls::{TlsFacts, Verification};

#[derive(Debug)]
pub struct ProbeCollector {
    store: Arc<Store>,
}

impl ProbeCollector {
    pub fn new(store: Arc<Store>) -> Self {
        ProbeCollector { store }
    }
}

type Labels<'a> = &'a [(String, String)];

impl Collector for ProbeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.store.read(|entries| {
            let entries: Vec<&Entry> = entries.values().collect();

            gauge(
                &mut encoder,
                &entries,
                "probe_success",
                "1 if the last run succeeded and every assertion held, else 0",
                |e| e.last.as_ref().map(|r| if r.success() { 1.0 } else { 0.0 }),
            )?;
            gauge(
                &mut encoder,
                &entries,
                "probe_duration_seconds",
                "Duration of the last run, retries included",
                |e| e.last.as_ref().map(|r| r.duration.as_secs_f64()),
            )?;
            gauge(
                &mut encoder,
                &entries,
                "probe_attempts",
                "Attempts the last run used (1 + retries used)",
                |e| e.last.as_ref().map(|r| f64::from(r.attempts)),
            )?;
            gauge(
                &mut encoder,
                &entries,
                "probe_consecutive_failures",
                "Failed runs in a row up to the last one; 0 after a success",
                |e| e.last.as_ref().map(|_| e.consecutive_failures as f64),
            )?;
            gauge(
                &mut encoder,
                &entries,
                "probe_dns_lookup_duration_seconds",
                "Name resolution in the last run; absent for IP literals",
                |e| phase(e, |p| p.dns),
            )?;
            gauge(
                &mut encoder,
                &entries,
                "probe_connect_duration_seconds",
                "TCP connect (SYN to established) in the last run",
                |e| phase(e, |p| p.connect),
            )?;
            gauge(
                &mut encoder,
                &entries,
                "probe_starttls_duration_seconds",
                "Plaintext STARTTLS negotiation in the last run, from connect to the go-ahead",
                |e| phase(e, |p| p.starttls),
            )?;

            info(
                &mut encoder,
                &entries,
                "probe_failure",
                "Present while the last run failed: why, and for dialogues the failing step",
                |e| {
                    let Some(failure) = e.last.as_ref().and_then(|r| r.failure()) else {
                        return Vec::new();
                    };
                    let mut labels = vec![("reason", failure.reason.as_str().to_string())];
                    labels.extend(failure.step.map(|s| ("step", s.to_string())));
                    vec![labels]
                },
            )?;
            tls(&mut encoder, &entries)?;
            http(&mut encoder, &entries)?;
            dns(&mut encoder, &entries)?;
            icmp(&mut encoder, &entries)?;
            series(
                &mut encoder,
                &entries,
                "probe_assertion_success",
                "1 if the assertion held in the last run, 0 if not; absent when it could not be judged",
                MetricType::Gauge,
                |e| {
                    e.last
                        .iter()
                        .flat_map(|r| &r.outcome.assertions)
                        .map(|j| (vec![("assertion", j.assertion.to_string())], f64::from(u8::from(j.held))))
                        .collect()
                },
            )?;
            counter(
                &mut encoder,
                &entries,
                "probe_runs",
                "Completed runs by result",
                "result",
                |e| vec![("success", e.successes), ("failure", e.failures)],
            )?;
            counter(
                &mut encoder,
                &entries,
                "probe_failures",
                "Failed runs by reason",
                "reason",
                |e| {
                    e.failures_by_reason
                        .iter()
                        .map(|(r, n)| (r.as_str(), *n))
                        .collect()
                },
            )?;
            Ok(())
        })
    }
}

/// The HTTP families: the last answer's status and version, time to first byte, redirects.
fn http(encoder: &mut DescriptorEncoder, entries: &[&Entry]) -> fmt::Result {
    gauge(
        encoder,
        entries,
        "probe_http_status_code",
        "Status of the last answer, after redirects",
        |e| http_facts(e).and_then(|h| h.status()).map(f64::from),
    )?;
    gauge(
        encoder,
        entries,
        "probe_http_version",
        "HTTP version of the last answer: 1.0, 1.1 or 2",
        |e| {
            http_facts(e)
                .and_then(|h| h.version())
                .and_then(|v| match v {
                    http::Version::HTTP_10 => Some(1.0),
                    http::Version::HTTP_11 => Some(1.1),
                    http::Version::HTTP_2 => Some(2.0),
                    _ => None,
                })
        },
    )?;
    gauge(
        encoder,
        entries,
        "probe_http_first_byte_duration_seconds",
        "From the request sent to the first byte of the answer, summed over redirects",
        |e| phase(e, |p| p.first_byte),
    )?;
    gauge(
        encoder,
        entries,
        "probe_http_redirects",
        "Redirects followed in the last run",
        |e| http_facts(e).map(|h| h.redirects() as f64),
    )
}

/// The dns probe's families: how many records answered, and the response code.
fn dns(encoder: &mut DescriptorEncoder, entries: &[&Entry]) -> fmt::Result {
    gauge(
        encoder,
        entries,
        "probe_dns_answer_rrs",
        "Records in the answer section of the last dns run",
        |e| dns_facts(e).map(|f| f.answers.len() as f64),
    )?;
    info(
        encoder,
        entries,
        "probe_dns_rcode",
        "The response code of the last dns run (NOERROR, NXDOMAIN, SERVFAIL, ...)",
        |e| match dns_facts(e) {
            Some(f) => vec![vec![("rcode", crate::net::dns::rcode_name(f.rcode))]],
            None => Vec::new(),
        },
    )
}

/// The icmp probe's families: round-trip statistics and loss.
fn icmp(encoder: &mut DescriptorEncoder, entries: &[&Entry]) -> fmt::Result {
    series(
        encoder,
        entries,
        "probe_icmp_rtt_seconds",
        "Echo round trips of the last icmp run: min, avg, max and stddev; absent without replies",
        MetricType::Gauge,
        |e| match icmp_facts(e).and_then(IcmpFacts::stats) {
            Some(stats) => ["min", "avg", "max", "stddev"]
                .into_iter()
                .zip(stats)
                .map(|(stat, value)| (vec![("stat", stat.to_string())], value))
                .collect(),
            None => Vec::new(),
        },
    )?;
    gauge(
        encoder,
        entries,
        "probe_icmp_packet_loss_ratio",
        "Share of the last icmp run's echo requests that got no reply, 0 to 1",
        |e| {
            e.last
                .as_ref()?
                .outcome
                .facts
                .icmp()
                .map(IcmpFacts::loss_ratio)
        },
    )
}

fn icmp_facts(e: &Entry) -> Option<&IcmpFacts> {
    e.last.as_ref()?.outcome.facts.icmp()
}

fn dns_facts(e: &Entry) -> Option<&DnsFacts> {
    e.last.as_ref()?.outcome.facts.dns()
}

fn http_facts(e: &Entry) -> Option<&HttpFacts> {
    e.last.as_ref()?.outcome.facts.http()
}

/// A phase of the last run in seconds; `None` before the first run or when the phase did not
/// happen (no lookup for an IP literal, no connect after a failed lookup).
fn phase(e: &Entry, pick: fn(&Phases) -> Option<Duration>) -> Option<f64> {
    let run = e.last.as_ref()?;
    pick(&run.outcome.trace.phases).map(|d| d.as_secs_f64())
}

/// The TLS families: handshake, version, and the facts of every presented certificate.
fn tls(encoder: &mut DescriptorEncoder, entries: &[&Entry]) -> fmt::Result {
    gauge(
        encoder,
        entries,
        "probe_tls_handshake_duration_seconds",
        "TLS handshake in the last run, after connect (and STARTTLS)",
        |e| phase(e, |p| p.tls),
    )?;
    info(
        encoder,
        entries,
        "probe_tls_version",
        "Negotiated TLS version and cipher suite",
        |e| {
            let Some(f) = facts(e) else { return Vec::new() };
            match (f.version, &f.cipher) {
                (Some(version), Some(cipher)) => vec![vec![
                    ("version", version.as_str().to_string()),
                    ("cipher", cipher.clone()),
                ]],
                _ => Vec::new(),
            }
        },
    )?;
    info(
        encoder,
        entries,
        "probe_tls_cert",
        "One per presented certificate, leaf first (cert_index 0), verified or not",
        |e| {
            let Some(f) = facts(e) else { return Vec::new() };
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
        series(encoder, entries, name, help, MetricType::Gauge, |e| {
            let Some(f) = facts(e) else { return Vec::new() };
            f.chain
                .iter()
                .enumerate()
                .filter_map(|(i, c)| Some((vec![("cert_index", i.to_string())], bound(c)? as f64)))
                .collect()
        })?;
    }
    gauge(
        encoder,
        entries,
        "probe_tls_cert_expires_in_seconds",
        "Seconds from the last run to the earliest expiry in the presented chain; negative once expired",
        |e| Some(facts(e)?.expires_in(e.last.as_ref()?.finished_at)? as f64),
    )?;
    gauge(
        encoder,
        entries,
        "probe_ssl_earliest_cert_expiry",
        "Earliest expiry in the presented chain, as a Unix timestamp (blackbox_exporter's name)",
        |e| Some(facts(e)?.earliest_expiry()?.1 as f64),
    )?;
    let verified = |e: &Entry, part: fn(&Verification) -> bool| {
        facts(e)?
            .verification
            .as_ref()
            .map(|v| f64::from(u8::from(part(v))))
    };
    gauge(
        encoder,
        entries,
        "probe_tls_chain_valid",
        "1 if the presented chain verifies to a trusted root, whatever `verify` says",
        |e| verified(e, |v| v.chain.is_ok()),
    )?;
    gauge(
        encoder,
        entries,
        "probe_tls_hostname_valid",
        "1 if the leaf certificate is valid for the server name, whatever `verify` says",
        |e| verified(e, |v| v.hostname.is_ok()),
    )
}

/// The longest label value taken from a certificate. A server chooses what its certificates
/// say, and one with thousands of names must not turn every scrape into megabytes.
const LABEL_LIMIT: usize = 1024;

/// `text`, cut at [`LABEL_LIMIT`] bytes (on a character boundary) with a note of how much more.
fn bounded(text: &str) -> String {
    if text.len() <= LABEL_LIMIT {
        return text.to_string();
    }
    let mut cut = LABEL_LIMIT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...({} more bytes)", &text[..cut], text.len() - cut)
}

fn facts(entry: &Entry) -> Option<&TlsFacts> {
    entry.last.as_ref()?.outcome.facts.tls()
}

/// One gauge family: a series for every entry that has a value.
fn gauge(
    encoder: &mut DescriptorEncoder,
    entries: &[&Entry],
    name: &str,
    help: &str,
    value: impl Fn(&Entry) -> Option<f64>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for entry in entries {
        if let Some(v) = value(entry) {
            let labels: Labels = &entry.target.labels;
            ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// One counter family: for every entry, a series per `(label value, count)` that `values` yields.
fn counter(
    encoder: &mut DescriptorEncoder,
    entries: &[&Entry],
    name: &str,
    help: &str,
    label: &'static str,
    values: impl Fn(&Entry) -> Vec<(&'static str, u64)>,
) -> fmt::Result {
    series(encoder, entries, name, help, MetricType::Counter, |e| {
        values(e)
            .into_iter()
            .map(|(value, count)| (vec![(label, value.to_string())], count as f64))
            .collect()
    })
}

/// One info family (value 1): for every entry, a series per label set that `sets` yields.
fn info(
    encoder: &mut DescriptorEncoder,
    entries: &[&Entry],
    name: &str,
    help: &str,
    sets: impl Fn(&Entry) -> Vec<Extra>,
) -> fmt::Result {
    series(encoder, entries, name, help, MetricType::Info, |e| {
        sets(e).into_iter().map(|labels| (labels, 1.0)).collect()
    })
}

/// Labels a series adds to its target's.
type Extra = Vec<(&'static str, String)>;

/// One family of any type: for every entry, the series that `values` yields, each with its own
/// extra labels. Counters are whole numbers, so their values convert back exactly.
fn series(
    encoder: &mut DescriptorEncoder,
    entries: &[&Entry],
    name: &str,
    help: &str,
    metric_type: MetricType,
    values: impl Fn(&Entry) -> Vec<(Extra, f64)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for entry in entries {
        let labels: Labels = &entry.target.labels;
        for (extra, value) in values(entry) {
            let set = (labels, extra);
            match metric_type {
                MetricType::Info => family.encode_info(&set)?,
                MetricType::Counter => {
                    ConstCounter::new(value as u64).encode(family.encode_family(&set)?)?
                }
                _ => ConstGauge::new(value).encode(family.encode_family(&set)?)?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_labels_are_bounded_on_a_character_boundary() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(1000);
        let label = bounded(&long);
        assert!(label.len() < LABEL_LIMIT + 40, "{}", label.len());
        assert!(label.ends_with("...(976 more bytes)"), "{label}");
    }
}
