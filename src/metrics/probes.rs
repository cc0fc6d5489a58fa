//! Probe series, rendered at scrape time from the latest run of every target.
//!
//! The families every target has are here; those of a probe type are in its folder, and the
//! registry renders them at their fixed place in between, so that the family order of a scrape
//! never changes.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::MetricType;

use crate::config::FailureReasons;
use crate::exposition::{Encoder, Kind, Value};
use crate::family::{Row, counter, gauge, series};
use crate::net;
use crate::probe::{self, Phases, Reason, ReasonSet, Run};
use crate::store::Entry;

/// What the common families read of one target, taken in one pass over the entries. At
/// 100,000 targets the entries and their runs are spread over a heap far larger than the
/// caches: each family reading them again would wait on memory for every target, where reading
/// this compact list streams.
struct Latest<'a> {
    run: Option<&'a Run>,
    /// success, duration, attempts, consecutive failures, the dns, connect and starttls phases;
    /// NaN where there is none (no run, a phase that did not happen), which no value is. Plain
    /// floats, so that a million targets' rows take 56 bytes each here rather than 112.
    gauges: [f64; 7],
    address: Option<IpAddr>,
    // Whether the run has per-address results, assertions, a failure: only then is it read
    // again.
    addresses: bool,
    assertions: bool,
    failed: bool,
    runs: [u64; 2],
    /// The reasons with a series at 0 until they happen.
    possible: ReasonSet,
    /// The reasons counted so far; `None` while there are none.
    counted: Option<&'a BTreeMap<Reason, u64>>,
}

impl<'a> Latest<'a> {
    fn of(entry: &'a Entry) -> Self {
        let run = entry.last.as_ref();
        let phase = |pick: fn(&Phases) -> Option<Duration>| {
            run.and_then(|r| pick(&r.outcome.trace.phases))
                .map(|d| d.as_secs_f64())
        };
        let absent = f64::NAN;
        let gauges = [
            run.map(|r| if r.success() { 1.0 } else { 0.0 }),
            run.map(|r| r.duration.as_secs_f64()),
            run.map(|r| f64::from(r.attempts)),
            run.map(|_| entry.consecutive_failures as f64),
            phase(|p| p.dns.get()),
            phase(|p| p.connect.get()),
            phase(|p| p.starttls.get()),
        ]
        .map(|v| v.unwrap_or(absent));
        Latest {
            run,
            gauges,
            address: run.and_then(|r| r.outcome.trace.address).map(|a| a.ip()),
            addresses: run.is_some_and(|r| !r.outcome.addresses.is_empty()),
            assertions: run.is_some_and(|r| !r.outcome.assertions.is_empty()),
            failed: run.is_some_and(|r| r.failure().is_some()),
            runs: [entry.successes, entry.failures],
            possible: possible(entry),
            counted: entry.failures_by_reason.as_deref(),
        }
    }

    /// The run, where `has` says it has what a family reads.
    fn run_with(&self, has: bool) -> Option<&'a Run> {
        self.run.filter(|_| has)
    }
}

/// The names and help of [`Latest::gauges`], in that order, which is their order in a scrape.
const GAUGES: [(&str, &str); 7] = [
    (
        "probe_success",
        "1 if the last run succeeded and every assertion held, else 0",
    ),
    (
        "probe_duration_seconds",
        "Duration of the last run, retries included",
    ),
    (
        "probe_attempts",
        "Attempts the last run used (1 + retries used)",
    ),
    (
        "probe_consecutive_failures",
        "Failed runs in a row up to the last one; 0 after a success",
    ),
    (
        "probe_dns_lookup_duration_seconds",
        "Name resolution in the last run; absent for IP literals",
    ),
    (
        "probe_connect_duration_seconds",
        "TCP connect (SYN to established) in the last run",
    ),
    (
        "probe_starttls_duration_seconds",
        "Plaintext STARTTLS negotiation in the last run, from connect to the go-ahead",
    ),
];

/// Every probe family over `entries` (in name order): each target's labels, escaped when its
/// config was loaded, are copied into each of its series.
pub fn encode(encoder: &mut Encoder, entries: &[Arc<Entry>]) -> fmt::Result {
    // The label texts side by side, read in order by every family: where each target's config
    // put its own, every series would wait on memory for it.
    let mut texts = String::with_capacity(entries.len() * 80);
    let ends: Vec<usize> = entries
        .iter()
        .map(|e| {
            texts.push_str(e.target.labels.text());
            texts.len()
        })
        .collect();
    let starts = std::iter::once(0).chain(ends.iter().copied());
    let latest: Vec<Row<Latest>> = starts
        .zip(&ends)
        .zip(entries)
        .map(|((start, &end), e)| (&texts[start..end], Latest::of(e)))
        .collect();
    let encoder = &mut *encoder;
    for (i, (name, help)) in GAUGES.iter().enumerate() {
        gauge(encoder, &latest, name, help, |l| {
            Some(l.gauges[i]).filter(|v| !v.is_nan())
        })?;
    }
    gauge(
        encoder,
        &latest,
        "probe_ip_protocol",
        "IP version of the address the last run probed (4 or 6); absent when it found none",
        |l| l.address.map(net::ip_protocol),
    )?;
    gauge(
        encoder,
        &latest,
        "probe_ip_addr_hash",
        "FNV-1a hash of the address the last run probed, as blackbox_exporter's; it changes when the address does",
        |l| l.address.map(net::ip_hash),
    )?;
    series(
        encoder,
        &latest,
        "probe_address_success",
        "With addresses: all, 1 for each address that succeeded in the last run, 0 for each that failed",
        MetricType::Gauge,
        |l| {
            l.run_with(l.addresses)
                .iter()
                .flat_map(|r| &r.outcome.addresses)
                .map(|p| {
                    let up = f64::from(u8::from(p.outcome.result.is_ok()));
                    (vec![("address", p.address.to_string())], up)
                })
                .collect()
        },
    )?;

    // Written here rather than through `family::info`: at 100,000 failing targets, a list of
    // labels built for each would be most of this family's time.
    encoder.family(
        "probe_failure",
        "Present while the last run failed: why, and for dialogues the failing step",
        Kind::Info,
    )?;
    for (labels, l) in &latest {
        let Some(failure) = l.run_with(l.failed).and_then(Run::failure) else {
            continue;
        };
        let mut number = itoa::Buffer::new();
        let reason = ("reason", failure.reason.as_str());
        let step = failure.step.map(|s| ("step", number.format(s)));
        encoder.sample(labels, std::iter::once(reason).chain(step), Value::One)?;
    }
    // Targets without a run yet have none of these series.
    let runs: Vec<Row<&Run>> = latest
        .iter()
        .filter_map(|&(labels, ref l)| Some((labels, l.run?)))
        .collect();
    probe::encode_type_families(encoder, &runs)?;
    series(
        encoder,
        &latest,
        "probe_assertion_success",
        "1 if the assertion held in the last run, 0 if not; absent when it could not be judged",
        MetricType::Gauge,
        |l| {
            l.run_with(l.assertions)
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
        &latest,
        "probe_runs",
        "Completed runs by result",
        "result",
        |l| [("success", l.runs[0]), ("failure", l.runs[1])],
    )?;
    counter(
        encoder,
        &latest,
        "probe_failures",
        "Failed runs by reason",
        "reason",
        |l| failures_by_reason(l.possible, l.counted),
    )?;
    Ok(())
}

/// The reasons a target has a series for before it fails with them: with
/// `failure_reasons: possible`, every reason it can produce, at 0 until it does (so that
/// `rate()` and `increase()` see the first failure); with `seen`, none.
fn possible(e: &Entry) -> ReasonSet {
    match e.target.failure_reasons {
        FailureReasons::Possible => e.target.reasons(),
        FailureReasons::Seen => ReasonSet::of(&[]),
    }
}

/// A series for every reason in `possible`, and for any other reason `counted`, in `Reason`
/// order: the set of both, its counts merged in from `counted` (in that order too).
fn failures_by_reason(
    possible: ReasonSet,
    counted: Option<&BTreeMap<Reason, u64>>,
) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    let mut counted = counted.into_iter().flatten().peekable();
    let shown = counted
        .clone()
        .fold(possible, |set, (r, _)| set.union(ReasonSet::of(&[*r])));
    shown.iter().map(move |reason| {
        let count = counted
            .next_if(|(r, _)| **r == reason)
            .map_or(0, |(_, n)| *n);
        (reason.as_str(), count)
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

    /// A store holding the targets of `yaml`.
    fn stored(yaml: &str) -> Store {
        let config = config::parse(yaml, "t.yml", &LoadOptions::default()).unwrap();
        let store = Store::default();
        store.apply(&config.targets, "");
        store
    }

    fn failures(store: &Store, name: &str) -> Vec<(&'static str, u64)> {
        let e = store.get(name).unwrap();
        failures_by_reason(possible(&e), e.failures_by_reason.as_deref()).collect()
    }

    #[test]
    fn every_reason_a_target_can_produce_has_a_series_from_the_start() {
        let yaml = "targets:\n  - {name: plain, type: tcp, host: 127.0.0.1, port: 1}\n  - {name: web, type: http, url: http://127.0.0.1:1/}\n  - {name: ping, type: icmp, host: 127.0.0.1}\n";
        let store = stored(yaml);
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
    fn with_failure_reasons_seen_a_target_has_only_the_reasons_it_failed_with() {
        let yaml = "failure_reasons: seen\ntargets:\n  - {name: plain, type: tcp, host: 127.0.0.1, port: 1}\n";
        let store = stored(yaml);
        assert_eq!(failures(&store, "plain"), []);
        store.record("plain", failed(Reason::ConnectionRefused));
        store.record("plain", failed(Reason::Timeout));
        store.record("plain", failed(Reason::ConnectionRefused));
        assert_eq!(
            failures(&store, "plain"),
            [("connection_refused", 2), ("timeout", 1)]
        );
        let mut encoder = crate::exposition::Encoder::whole(false);
        encode(&mut encoder, &store.snapshot()).unwrap();
        let text = encoder.finish().unwrap();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("probe_failures_total{"))
            .collect();
        assert_eq!(series.len(), 2, "{text}");
        for result in ["success\"} 0", "failure\"} 3"] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with("probe_runs_total{") && l.ends_with(result)),
                "every first failure is still counted: {text}"
            );
        }
    }

    #[test]
    fn assertions_add_the_reasons_they_fail_with() {
        let yaml = "targets:\n  - name: a\n    type: tcp\n    host: 127.0.0.1\n    port: 1\n    assertions:\n      - {type: response_time, less_than: 1s}\n";
        let store = stored(yaml);
        assert!(failures(&store, "a").contains(&("assertion_failed", 0)));
    }
}
