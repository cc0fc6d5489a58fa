//! Probe series, rendered at scrape time from the latest run of every target.
//!
//! The families every target has are here; those of a probe type are in its folder, and the
//! registry renders them at their fixed place in between, so that the family order of a scrape
//! never changes.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::MetricType;

use crate::exposition::{Encoder, label_text};
use crate::family::{Row, counter, gauge, info, series};
use crate::net;
use crate::probe::{self, Phases, Reason, Run};
use crate::store::Entry;

/// Every probe family over `entries` (in name order): each target's labels are escaped once,
/// then copied into each of its series.
pub fn encode(encoder: &mut Encoder, entries: &[Arc<Entry>]) -> fmt::Result {
    let labels: Vec<String> = entries
        .iter()
        .map(|e| label_text(&e.target.labels))
        .collect();
    let entries: Vec<Row<&Entry>> = labels
        .iter()
        .zip(entries)
        .map(|(labels, e)| (labels.as_str(), &**e))
        .collect();
    let encoder = &mut *encoder;
    gauge(
        encoder,
        &entries,
        "probe_success",
        "1 if the last run succeeded and every assertion held, else 0",
        |e| e.last.as_ref().map(|r| if r.success() { 1.0 } else { 0.0 }),
    )?;
    gauge(
        encoder,
        &entries,
        "probe_duration_seconds",
        "Duration of the last run, retries included",
        |e| e.last.as_ref().map(|r| r.duration.as_secs_f64()),
    )?;
    gauge(
        encoder,
        &entries,
        "probe_attempts",
        "Attempts the last run used (1 + retries used)",
        |e| e.last.as_ref().map(|r| f64::from(r.attempts)),
    )?;
    gauge(
        encoder,
        &entries,
        "probe_consecutive_failures",
        "Failed runs in a row up to the last one; 0 after a success",
        |e| e.last.as_ref().map(|_| e.consecutive_failures as f64),
    )?;
    gauge(
        encoder,
        &entries,
        "probe_dns_lookup_duration_seconds",
        "Name resolution in the last run; absent for IP literals",
        |e| phase(e, |p| p.dns),
    )?;
    gauge(
        encoder,
        &entries,
        "probe_connect_duration_seconds",
        "TCP connect (SYN to established) in the last run",
        |e| phase(e, |p| p.connect),
    )?;
    gauge(
        encoder,
        &entries,
        "probe_starttls_duration_seconds",
        "Plaintext STARTTLS negotiation in the last run, from connect to the go-ahead",
        |e| phase(e, |p| p.starttls),
    )?;
    gauge(
        encoder,
        &entries,
        "probe_ip_protocol",
        "IP version of the address the last run probed (4 or 6); absent when it found none",
        |e| address(e).map(net::ip_protocol),
    )?;
    gauge(
        encoder,
        &entries,
        "probe_ip_addr_hash",
        "FNV-1a hash of the address the last run probed, as blackbox_exporter's; it changes when the address does",
        |e| address(e).map(net::ip_hash),
    )?;
    series(
        encoder,
        &entries,
        "probe_address_success",
        "With addresses: all, 1 for each address that succeeded in the last run, 0 for each that failed",
        MetricType::Gauge,
        |e| {
            e.last
                .iter()
                .flat_map(|r| &r.outcome.addresses)
                .map(|p| {
                    let up = f64::from(u8::from(p.outcome.result.is_ok()));
                    (vec![("address", p.address.to_string())], up)
                })
                .collect()
        },
    )?;

    info(
        encoder,
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
    // Targets without a run yet have none of these series.
    let runs: Vec<Row<&Run>> = entries
        .iter()
        .filter_map(|&(labels, e)| Some((labels, e.last.as_deref()?)))
        .collect();
    probe::encode_type_families(encoder, &runs)?;
    series(
        encoder,
        &entries,
        "probe_assertion_success",
        "1 if the assertion held in the last run, 0 if not; absent when it could not be judged",
        MetricType::Gauge,
        |e| {
            e.last
                .iter()
                .flat_map(|r| &r.outcome.assertions)
                .map(|j| {
                    (
                        vec![("assertion", j.assertion.to_string())],
                        f64::from(u8::from(j.held)),
                    )
                })
                .collect()
        },
    )?;
    counter(
        encoder,
        &entries,
        "probe_runs",
        "Completed runs by result",
        "result",
        |e| [("success", e.successes), ("failure", e.failures)],
    )?;
    counter(
        encoder,
        &entries,
        "probe_failures",
        "Failed runs by reason",
        "reason",
        |e| failures_by_reason(e),
    )?;
    Ok(())
}

/// A phase of the last run in seconds; `None` before the first run or when the phase did not
/// happen (no lookup for an IP literal, no connect after a failed lookup).
fn phase(e: &Entry, pick: fn(&Phases) -> Option<Duration>) -> Option<f64> {
    let run = e.last.as_ref()?;
    pick(&run.outcome.trace.phases).map(|d| d.as_secs_f64())
}

/// The address the last run probed (with `addresses: all`, the one whose result it shows).
fn address(e: &Entry) -> Option<IpAddr> {
    Some(e.last.as_ref()?.outcome.trace.address?.ip())
}

/// A series for every reason the target can produce, at 0 until it does (so that `rate()` and
/// `increase()` see the first failure), and for any other reason it has produced. Both lists
/// are in `Reason` order, so one merging pass builds it.
fn failures_by_reason(e: &Entry) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    let possible = e.target.reasons();
    let mut counted = e.failures_by_reason.iter().peekable();
    Reason::ALL.iter().filter_map(move |&reason| {
        let count = counted.next_if(|(r, _)| **r == reason).map(|(_, n)| *n);
        (count.is_some() || possible.contains(reason))
            .then(|| (reason.as_str(), count.unwrap_or(0)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, LoadOptions};
    use crate::probe::{Failure, Outcome, Trace};
    use crate::store::Store;
    use std::time::SystemTime;

    fn failed(reason: Reason) -> Run {
        Run {
            outcome: Outcome::new(Err(Failure::new(reason, "x")), Trace::start()),
            attempts: 1,
            duration: Duration::from_millis(1),
            finished_at: SystemTime::now(),
        }
    }

    fn failures(store: &Store, name: &str) -> Vec<(&'static str, u64)> {
        failures_by_reason(&store.get(name).unwrap()).collect()
    }

    #[test]
    fn every_reason_a_target_can_produce_has_a_series_from_the_start() {
        let yaml = "targets:\n  - {name: plain, type: tcp, host: 127.0.0.1, port: 1}\n  - {name: web, type: http, url: http://127.0.0.1:1/}\n  - {name: ping, type: icmp, host: 127.0.0.1}\n";
        let config = config::parse(yaml, "t.yml", &LoadOptions::default()).unwrap();
        let store = Store::default();
        store.apply(&config.targets, "");
        let plain = failures(&store, "plain");
        assert!(plain.contains(&("connection_refused", 0)), "{plain:?}");
        assert!(plain.contains(&("expect_mismatch", 0)), "{plain:?}");
        for absent in [
            "http_status",
            "tls_unknown_issuer",
            "icmp_no_reply",
            "assertion_failed",
        ] {
            assert!(
                plain.iter().all(|(r, _)| *r != absent),
                "{absent}: {plain:?}"
            );
        }
        let web = failures(&store, "web");
        assert!(web.contains(&("http_status", 0)), "{web:?}");
        assert!(
            web.contains(&("tls_unknown_issuer", 0)),
            "redirects may go to https"
        );
        let ping = failures(&store, "ping");
        assert!(ping.contains(&("icmp_no_reply", 0)), "{ping:?}");
        assert!(ping.iter().all(|(r, _)| *r != "connection_refused"));

        store.record("plain", failed(Reason::ConnectionRefused));
        // A reason outside the type's set is still counted, never hidden.
        store.record("plain", failed(Reason::HttpStatus));
        let plain = failures(&store, "plain");
        assert!(plain.contains(&("connection_refused", 1)), "{plain:?}");
        assert!(plain.contains(&("http_status", 1)), "{plain:?}");
        let mut order: Vec<&str> = plain.iter().map(|(r, _)| *r).collect();
        let listed = order.clone();
        order.sort_by_key(|r| Reason::ALL.iter().position(|x| x.as_str() == *r));
        assert_eq!(order, listed, "in Reason order, as before");
    }

    #[test]
    fn assertions_add_the_reasons_they_fail_with() {
        let yaml = "targets:\n  - name: a\n    type: tcp\n    host: 127.0.0.1\n    port: 1\n    assertions:\n      - {type: response_time, less_than: 1s}\n";
        let config = config::parse(yaml, "t.yml", &LoadOptions::default()).unwrap();
        let store = Store::default();
        store.apply(&config.targets, "");
        assert!(failures(&store, "a").contains(&("assertion_failed", 0)));
    }
}
