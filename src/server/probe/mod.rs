//! `GET /probe?module=M&target=T`: one run now, with a module of the config, answered with its
//! metrics as blackbox_exporter answers, so that Prometheus jobs, `Probe` resources and
//! `VMProbe`s written for blackbox work unchanged. Served only with `--web.enable-probe`, and
//! only for modules with an allow list (see [`aim`]).
//!
//! The scrape's `X-Prometheus-Scrape-Timeout-Seconds`, less `--probe.timeout-offset`, bounds
//! the run when it is shorter than the module's timeout, so that the answer comes before the
//! scraper gives up. `debug=true` answers with the run's report, the metrics and the module
//! instead.

mod aim;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper::StatusCode;
use hyper::header::HeaderMap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use tokio::time::Instant;

use self::aim::{Ask, Refusal};
use crate::config::{Module, Target};
use crate::duration;
use crate::metrics::Format;
use crate::probe::{self, Addresses, Facts, Run, RunPolicy};
use crate::scheduler::Limiter;

/// Renders one run's answer: the body of a `/probe` response.
pub type Render = fn(&Run, &Target, Format) -> String;

/// The module blackbox_exporter runs when a request names none.
const DEFAULT_MODULE: &str = "http_2xx";

/// A run must have at least this long, once the offset is taken from the scrape's timeout.
const MIN_RUN: Duration = Duration::from_millis(100);

/// The longest parameter vantage reads: a URL, with room to spare.
const MAX_PARAMETER: usize = 4096;

/// How a request ended, a label value of `vantage_probe_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ended {
    Success,
    Failure,
    UnknownModule,
    Invalid,
    Refused,
    Busy,
}

impl Ended {
    fn as_str(self) -> &'static str {
        match self {
            Ended::Success => "success",
            Ended::Failure => "failure",
            Ended::UnknownModule => "unknown_module",
            Ended::Invalid => "invalid",
            Ended::Refused => "refused",
            Ended::Busy => "busy",
        }
    }
}

/// An answer: status, content type and body.
pub type Answer = (StatusCode, &'static str, String);

const TEXT: &str = "text/plain; charset=utf-8";

#[derive(Debug)]
pub struct ProbeEndpoint {
    modules: RwLock<Arc<BTreeMap<String, Arc<Module>>>>,
    offset: Duration,
    render: Render,
    /// `max_concurrent_probes`, shared with the scheduler: a `/probe` run is a run like any.
    limiter: Arc<Limiter>,
    /// Requests by module (empty for unknown modules: callers choose those names) and result.
    counts: Mutex<BTreeMap<(String, Ended), u64>>,
}

impl ProbeEndpoint {
    pub fn new(offset: Duration, render: Render, limiter: Arc<Limiter>) -> ProbeEndpoint {
        ProbeEndpoint {
            modules: RwLock::default(),
            offset,
            render,
            limiter,
            counts: Mutex::default(),
        }
    }

    /// The modules of a config just loaded or reloaded; requests under way keep theirs.
    pub fn apply(&self, modules: &BTreeMap<String, Arc<Module>>) {
        *self.modules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(modules.clone());
    }

    fn count(&self, module: &str, result: Ended) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry((module.to_string(), result)).or_default() += 1;
    }

    /// Runs the request's probe and answers with its metrics in `format`.
    pub async fn answer(&self, query: &str, headers: &HeaderMap, format: Format) -> Answer {
        let params = match Params::parse(query) {
            Ok(p) => p,
            Err(e) => {
                self.count("", Ended::Invalid);
                return (StatusCode::BAD_REQUEST, TEXT, format!("{e}\n"));
            }
        };
        let name = params.module.as_deref().unwrap_or(DEFAULT_MODULE);
        let module = {
            let modules = self.modules.read().unwrap_or_else(|e| e.into_inner());
            modules.get(name).cloned()
        };
        let Some(module) = module else {
            self.count("", Ended::UnknownModule);
            return (
                StatusCode::BAD_REQUEST,
                TEXT,
                format!("Unknown module {:?}\n", shown(name)),
            );
        };
        let Some(target) = params.target.as_deref() else {
            self.count(&module.name, Ended::Invalid);
            return (
                StatusCode::BAD_REQUEST,
                TEXT,
                "Target parameter is missing\n".to_string(),
            );
        };
        let timeout = match self.timeout(&module, headers) {
            Ok(t) => t,
            Err(e) => {
                self.count(&module.name, Ended::Invalid);
                return (StatusCode::BAD_REQUEST, TEXT, format!("{e}\n"));
            }
        };
        // Every step below, the allow list's lookup and the wait for a slot included, comes
        // out of one budget, so that the answer arrives within the scrape's timeout.
        let deadline = Instant::now() + timeout;
        let ask = Ask {
            target,
            hostname: params.hostname.as_deref(),
        };
        let aimed = match aim::aim(&module, &ask, timeout).await {
            Ok(aimed) => aimed,
            Err(refusal) => {
                let (status, result, why) = match refusal {
                    Refusal::Bad(why) => (StatusCode::BAD_REQUEST, Ended::Invalid, why),
                    Refusal::Forbidden(why) => (StatusCode::FORBIDDEN, Ended::Refused, why),
                };
                self.count(&module.name, result);
                return (status, TEXT, format!("{why}\n"));
            }
        };
        let slot = deadline
            .checked_sub(MIN_RUN)
            .map(|last_start| tokio::time::timeout_at(last_start, self.limiter.acquire()));
        let permit = match slot {
            Some(wait) => wait.await.ok().flatten(),
            None => None,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if permit.is_none() || left < MIN_RUN {
            self.count(&module.name, Ended::Busy);
            let why = if permit.is_none() {
                format!(
                    "max_concurrent_probes ({}) runs were in flight",
                    self.limiter.size()
                )
            } else {
                "looking up the target for the allow list took the time".to_string()
            };
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("no run could start within the timeout: {why}\n"),
            );
        }
        let template = &module.template;
        let policy = RunPolicy {
            timeout: left,
            addresses: if aimed.pinned {
                Addresses::First
            } else {
                template.policy.addresses
            },
            ..template.policy
        };
        let probe = aimed.probe;
        let mut run = probe::run(&probe, &template.assertions, &policy).await;
        drop(permit);
        // The lookup done for the allow list is this probe's: the run, pinned, did none.
        if let Some(lookup) = aimed.lookup {
            run.duration += lookup;
            let phases = &mut run.outcome.trace.phases;
            phases.dns = (phases.dns.get().unwrap_or_default() + lookup).into();
            if let Facts::Http(http) = &mut run.outcome.facts
                && let Some(first) = http.hops.first_mut()
            {
                first.phases.dns = lookup.into();
            }
        }
        let target = template.running(probe, policy);
        let result = if run.failure().is_none() {
            Ended::Success
        } else {
            Ended::Failure
        };
        self.count(&module.name, result);
        if params.debug {
            return (
                StatusCode::OK,
                TEXT,
                self.debug(&module, ask.target, &target, &run),
            );
        }
        (
            StatusCode::OK,
            format.content_type(),
            (self.render)(&run, &target, format),
        )
    }

    /// The module's timeout, or the scrape's less the offset when that is shorter.
    fn timeout(&self, module: &Module, headers: &HeaderMap) -> Result<Duration, String> {
        let own = module.template.policy.timeout;
        let Some(header) = headers.get("x-prometheus-scrape-timeout-seconds") else {
            return Ok(own);
        };
        let seconds = header
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .ok_or("X-Prometheus-Scrape-Timeout-Seconds is not a positive number of seconds")?;
        let scrape = Duration::try_from_secs_f64(seconds).unwrap_or(own);
        let left = scrape.saturating_sub(self.offset);
        if left < MIN_RUN {
            return Err(format!(
                "the scrape's timeout {} less the offset {} leaves less than {} for the run",
                duration::format(scrape),
                duration::format(self.offset),
                duration::format(MIN_RUN)
            ));
        }
        Ok(left.min(own))
    }

    fn debug(&self, module: &Module, asked: &str, target: &Target, run: &Run) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Module {:?}, target {asked:?} ({}):\n",
            module.name,
            target.probe.target()
        );
        out.push_str(&crate::report::render(target, run));
        out.push_str("\nMetrics that would have been returned:\n");
        out.push_str(&(self.render)(run, target, Format::Classic));
        let t = &module.template;
        let _ = writeln!(
            out,
            "\nModule configuration:\n  type {}, timeout {} (this run {}), {} retries{}",
            t.probe.kind(),
            duration::format(t.policy.timeout),
            duration::format(target.policy.timeout),
            t.policy.retries,
            target.probe.summary()
        );
        out
    }

    fn snapshot(&self) -> Vec<((String, Ended), u64)> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// A caller's module name, cut short for an answer.
fn shown(name: &str) -> String {
    name.chars().take(128).collect()
}

/// `vantage_probe_requests_total{module, result}`.
#[derive(Debug)]
pub struct ProbeCollector(pub Arc<ProbeEndpoint>);

impl Collector for ProbeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let counts = self.0.snapshot();
        let mut family = encoder.encode_descriptor(
            "vantage_probe_requests",
            "Requests to /probe by module (empty when unknown) and result: success, failure, \
             unknown_module, invalid (a parameter or the scrape timeout), refused (outside the \
             module's allow list), busy (no slot of max_concurrent_probes in time)",
            None,
            MetricType::Counter,
        )?;
        for ((module, result), n) in counts {
            let labels = [("module", module.as_str()), ("result", result.as_str())];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The query parameters `/probe` reads; others are ignored, as blackbox ignores them.
#[derive(Debug, Default, PartialEq, Eq)]
struct Params {
    module: Option<String>,
    target: Option<String>,
    hostname: Option<String>,
    debug: bool,
}

impl Params {
    fn parse(query: &str) -> Result<Params, String> {
        let mut params = Params::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value)?;
            if value.len() > MAX_PARAMETER {
                return Err(format!("parameter {key:?} is over {MAX_PARAMETER} bytes"));
            }
            match decode(key)?.as_str() {
                "module" => params.module = Some(value),
                "target" => params.target = Some(value),
                "hostname" => params.hostname = Some(value),
                "debug" => params.debug = value == "true",
                _ => {}
            }
        }
        Ok(params)
    }
}

/// Percent-decoding of a query component, `+` as a space (HTML forms' encoding).
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("a query parameter has a malformed %-escape")?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "a query parameter is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_decoded_and_others_ignored() {
        let p = Params::parse(
            "module=http_2xx&target=http%3A%2F%2F127.0.0.1%3A8080%2Fa%3Fb%3Dc&hostname=www.x&\
             debug=true&other=1&flag",
        )
        .unwrap();
        assert_eq!(
            p,
            Params {
                module: Some("http_2xx".into()),
                target: Some("http://127.0.0.1:8080/a?b=c".into()),
                hostname: Some("www.x".into()),
                debug: true,
            }
        );
        assert_eq!(decode("a+b%20c").unwrap(), "a b c");
        assert!(Params::parse("target=%zz").is_err());
        assert!(Params::parse("target=%ff").is_err());
        assert!(Params::parse(&format!("target={}", "a".repeat(5000))).is_err());
        assert_eq!(Params::parse("").unwrap(), Params::default());
    }
}
