//! The registry of probe types: [`Probe`] and [`Facts`] have one arm per type, and every
//! dispatch is a `match` over them, so a type that is added and not wired in everywhere is a
//! compile error rather than a silent gap.
//!
//! A probe type is a folder (`tcp`, `http`, `dns`, `icmp`) with a validated probe struct,
//! `async fn attempt(&self, deadline) -> Outcome<TheirFacts>`, its raw config section and
//! builder, its metric families (`metrics`) and its report lines (`report`). What all types
//! share (reasons, failures, traces, runs) is in `outcome`; this module turns their outcomes
//! into the registry's, and hands each type's outputs a [`Seen`] of the run with that type's
//! facts. Adding a type is its folder plus an arm in every `match` here.

pub mod addresses;
pub mod assertion;
pub mod dns;
pub mod http;
pub mod icmp;
pub mod lines;
pub mod tcp;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::exposition::Encoder;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::build::{Common, Context, S};
use crate::family::Row;
use crate::net::Host;
use crate::outcome::{self, run_attempts};
pub use crate::outcome::{
    Addresses, Close, Event, Failure, Judged, Phases, Probed, QUOTE_LIMIT, Reason, ReasonSet,
    RunPolicy, Seen, Timed, Trace, quote,
};
use crate::tls::config::RawTls;
use crate::tls::{self, TlsFacts};
use addresses::Locator;
pub use assertion::Assertion;
use dns::DnsFacts;
use dns::config::RawDns;
use http::HttpFacts;
use http::config::RawHttp;
use icmp::IcmpFacts;
use icmp::config::RawIcmp;
use tcp::config::RawTcp;
use tcp::{Step, TcpFacts};

/// An attempt's outcome, with the facts of whichever type ran.
pub type Outcome = outcome::Outcome<Facts>;

/// A run's result, with the facts of whichever type ran.
pub type Run = outcome::Run<Facts>;

/// A target's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Icmp,
    Tcp,
    Http,
    Dns,
}

/// The keys and tables of a target that only some types take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Host,
    Port,
    Url,
    Tls,
    Tcp,
    Http,
    Icmp,
    /// `addresses`: which of the host's addresses a run probes.
    Addresses,
}

/// A target's per-type tables, as written, for its type's builder.
#[derive(Default)]
pub struct Sections<'r> {
    pub tcp: Option<&'r S<RawTcp>>,
    pub tls: Option<&'r S<RawTls>>,
    pub http: Option<&'r S<RawHttp>>,
    pub dns: Option<&'r S<RawDns>>,
    pub icmp: Option<&'r S<RawIcmp>>,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Icmp => "icmp",
            Kind::Tcp => "tcp",
            Kind::Http => "http",
            Kind::Dns => "dns",
        }
    }

    /// Whether targets of this type may write `key`; the others are errors where written.
    pub fn accepts(self, key: Key) -> bool {
        use Key::*;
        match self {
            Kind::Tcp => matches!(key, Host | Port | Tls | Tcp | Addresses),
            Kind::Http => matches!(key, Url | Tls | Http | Addresses),
            Kind::Dns => matches!(key, Host),
            Kind::Icmp => matches!(key, Host | Icmp | Addresses),
        }
    }

    /// Whether the type connects to a host that `dns.server` may resolve; the dns type's own
    /// `dns` table is its question instead.
    pub fn resolves_host(self) -> bool {
        match self {
            Kind::Tcp | Kind::Http | Kind::Icmp => true,
            Kind::Dns => false,
        }
    }

    /// Builds the probe from the target's shared keys and its tables with this type's builder:
    /// `None` after reporting errors in `cx`.
    pub fn build(self, cx: &mut Context, common: &Common, s: &Sections) -> Option<Probe> {
        Some(match self {
            Kind::Tcp => Probe::Tcp(tcp::config::build(cx, common, s.tcp, s.tls)?),
            Kind::Http => Probe::Http(Box::new(http::config::build(cx, common, s.http, s.tls)?)),
            Kind::Dns => Probe::Dns(Box::new(dns::config::build(cx, common, s.dns)?)),
            Kind::Icmp => Probe::Icmp(icmp::config::build(cx, common, s.icmp)?),
        })
    }
}

/// A configured check, ready to run.
#[derive(Debug, Clone)]
pub enum Probe {
    Tcp(tcp::TcpProbe),
    Http(Box<http::HttpProbe>),
    Dns(Box<dns::DnsProbe>),
    Icmp(icmp::IcmpProbe),
}

impl Probe {
    /// The `probe` label.
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Tcp(_) => "tcp",
            Probe::Http(_) => "http",
            Probe::Dns(_) => "dns",
            Probe::Icmp(_) => "icmp",
        }
    }

    /// The `target` label: what is probed, as the user would write it.
    pub fn target(&self) -> String {
        match self {
            Probe::Tcp(p) => p.host.with_port(p.port),
            Probe::Http(p) => p.written.clone(),
            Probe::Dns(p) => p.written.clone(),
            Probe::Icmp(p) => p.host.to_string(),
        }
    }

    /// `check-config`'s words for what the probe does beyond its target.
    pub fn summary(&self) -> String {
        match self {
            Probe::Tcp(p) => p.summary(),
            Probe::Http(p) => p.summary(),
            Probe::Dns(p) => p.summary(),
            Probe::Icmp(p) => p.summary(),
        }
    }

    /// The same check against another address: `HOST:PORT` for tcp, a URL for http, a host
    /// for dns and icmp.
    pub fn retarget(&self, address: &str) -> Result<Probe, String> {
        Ok(match self {
            Probe::Tcp(p) => Probe::Tcp(p.retarget(address)?),
            Probe::Http(p) => Probe::Http(Box::new(p.retarget(address)?)),
            Probe::Dns(p) => Probe::Dns(Box::new(p.retarget(address)?)),
            Probe::Icmp(p) => Probe::Icmp(p.retarget(address)?),
        })
    }

    /// Where the host is, for a run that resolves it once and probes every address; `None`
    /// for dns probes, whose server is an address already.
    pub fn locator(&self) -> Option<Locator> {
        let (host, ip_version, resolver) = match self {
            Probe::Tcp(p) => (p.host.clone(), p.ip_version, p.resolver.as_deref().copied()),
            // Pinned, it probes that address and no other the name may have.
            Probe::Http(p) => (
                p.pinned.map_or_else(|| p.url.host.clone(), Host::Ip),
                p.ip_version,
                p.resolver,
            ),
            Probe::Icmp(p) => (p.host.clone(), p.ip_version, p.resolver),
            Probe::Dns(_) => return None,
        };
        Some(Locator {
            host,
            ip_version,
            resolver,
        })
    }

    /// The same check, connecting to `ip` instead of resolving the host. Unlike
    /// [`retarget`](Self::retarget), everything else still names the host: the TLS server
    /// name and the names a STARTTLS dialogue announces (set when the probe was built), and
    /// http's `Host` header and redirects.
    pub fn pin(&self, ip: IpAddr) -> Probe {
        match self {
            Probe::Tcp(p) => Probe::Tcp(tcp::TcpProbe {
                host: Host::Ip(ip),
                ..p.clone()
            }),
            Probe::Http(p) => Probe::Http(Box::new(http::HttpProbe {
                pinned: Some(ip),
                ..(**p).clone()
            })),
            Probe::Icmp(p) => Probe::Icmp(icmp::IcmpProbe {
                host: Host::Ip(ip),
                ..p.clone()
            }),
            Probe::Dns(p) => Probe::Dns(p.clone()),
        }
    }

    /// Every reason a run of this probe can end with (assertions aside): the series of
    /// `probe_failures_total` that exist from the start, at 0.
    pub fn reasons(&self) -> ReasonSet {
        match self {
            Probe::Tcp(p) => p.reasons(),
            Probe::Http(p) => p.reasons(),
            Probe::Dns(_) => dns::REASONS,
            Probe::Icmp(_) => icmp::REASONS,
        }
    }

    pub async fn attempt(&self, deadline: Instant) -> Outcome {
        match self {
            Probe::Tcp(p) => p.attempt(deadline).await.map_facts(Facts::Tcp),
            Probe::Http(p) => p
                .attempt(deadline)
                .await
                .map_facts(|f| Facts::Http(Box::new(f))),
            Probe::Dns(p) => p
                .attempt(deadline)
                .await
                .map_facts(|f| Facts::Dns(f.map(Box::new))),
            Probe::Icmp(p) => p
                .attempt(deadline)
                .await
                .map_facts(|f| Facts::Icmp(f.map(Box::new))),
        }
    }

    /// Writes this type's lines of `vantage probe`'s report on `run` through `line`, between
    /// the header and the result; returns the dialogue steps that a failure's `step` counts
    /// (none for types without a dialogue).
    pub fn report(&self, run: &Run, line: &mut impl FnMut(&str, String)) -> &[Step] {
        match self {
            Probe::Tcp(p) => {
                tcp::report::lines(p, run.seen(Facts::tcp), line);
                &p.steps
            }
            Probe::Http(_) => {
                http::report::lines(run.seen(Facts::http), line);
                &[]
            }
            Probe::Dns(p) => {
                dns::report::lines(p, run.seen(Facts::dns), line);
                &[]
            }
            Probe::Icmp(p) => {
                icmp::report::lines(p, run.seen(Facts::icmp), line);
                &[]
            }
        }
    }
}

impl Probe {
    /// blackbox_exporter's families of this type for `run`, as its `/probe` answers them
    /// (`metrics::blackbox` renders the common ones around these).
    pub fn encode_blackbox(&self, encoder: &mut Encoder, run: &Run) -> fmt::Result {
        let failure = run.failure().map(|f| f.reason);
        match self {
            Probe::Tcp(_) => tcp::metrics::blackbox(encoder, run.seen(Facts::tcp), failure),
            Probe::Http(_) => http::metrics::blackbox(encoder, run.seen(Facts::http), failure),
            Probe::Dns(_) => dns::metrics::blackbox(encoder, run.seen(Facts::dns)),
            Probe::Icmp(_) => icmp::metrics::blackbox(encoder, run.seen(Facts::icmp)),
        }
    }

    /// The address the target's host resolved to in `run`, and how long finding it took
    /// (`None` when no lookup happened): blackbox_exporter's `probe_ip_*` and
    /// `probe_dns_lookup_time_seconds`. For http, the first request's, as blackbox resolves only
    /// the configured host; for dns, the server, an address that needs no lookup (the trace's
    /// `dns` phase is the question itself there).
    pub fn resolved(&self, run: &Run) -> (Option<IpAddr>, Option<Duration>) {
        let trace = &run.outcome.trace;
        let address = trace.address.map(|a| a.ip());
        match (self, run.outcome.facts.http()) {
            (Probe::Http(_), Some(http)) => match http.hops.first() {
                // With `addresses: all` (or a /probe pinned after its lookup), the lookup was
                // the run's, before any request.
                Some(hop) => (
                    hop.address.map(|a| a.ip()),
                    hop.phases.dns.get().or(trace.phases.dns.get()),
                ),
                None => (None, None),
            },
            (Probe::Dns(_), _) => (address, None),
            _ => (address, trace.phases.dns.get()),
        }
    }
}

/// Renders the families of every probe type over the targets in `runs` (those with a last
/// run, in the store's order), family after family: TLS (for tcp and http), http, dns, icmp.
/// Each type's function sees every target with its own facts, or none for targets of other
/// types, so the series of a family come out in the same order whatever their types.
pub fn encode_type_families(encoder: &mut Encoder, runs: &[Row<'_, &Run>]) -> fmt::Result {
    tls::metrics::families(encoder, &seen(runs, Facts::tls))?;
    http::metrics::families(encoder, &seen(runs, Facts::http))?;
    dns::metrics::families(encoder, &seen(runs, Facts::dns))?;
    icmp::metrics::families(encoder, &seen(runs, Facts::icmp))
}

/// `runs` as the rows of one type's families, with the facts `pick` finds.
fn seen<'a, G>(
    runs: &[Row<'a, &'a Run>],
    pick: fn(&Facts) -> Option<&G>,
) -> Vec<Row<'a, Seen<'a, G>>> {
    runs.iter()
        .map(|&(labels, run)| (labels, run.seen(pick)))
        .collect()
}

/// What an attempt observed beyond the common trace: its probe type's facts.
#[derive(Debug, Clone, Default)]
pub enum Facts {
    /// The attempt observed nothing of its type (it never ran, or was cut off).
    #[default]
    None,
    Tcp(TcpFacts),
    Http(Box<HttpFacts>),
    /// Boxed, as every target's latest run keeps its facts: inline, the largest type's facts
    /// would set the size of every run's.
    Dns(Option<Box<DnsFacts>>),
    Icmp(Option<Box<IcmpFacts>>),
}

impl Facts {
    /// What a tcp probe observed.
    pub fn tcp(&self) -> Option<&TcpFacts> {
        match self {
            Facts::Tcp(f) => Some(f),
            _ => None,
        }
    }

    /// What the TLS handshake revealed, for targets with TLS that got that far; for HTTP, the
    /// last https hop's.
    pub fn tls(&self) -> Option<&TlsFacts> {
        match self {
            Facts::Tcp(f) => f.tls.as_deref(),
            Facts::Http(f) => f.tls.as_ref(),
            Facts::None | Facts::Dns(_) | Facts::Icmp(_) => None,
        }
    }

    /// The requests and answers of an HTTP probe.
    pub fn http(&self) -> Option<&HttpFacts> {
        match self {
            Facts::Http(f) => Some(f),
            _ => None,
        }
    }

    /// The answer of a dns probe.
    pub fn dns(&self) -> Option<&DnsFacts> {
        match self {
            Facts::Dns(f) => f.as_deref(),
            _ => None,
        }
    }

    /// The echoes of an icmp probe.
    pub fn icmp(&self) -> Option<&IcmpFacts> {
        match self {
            Facts::Icmp(f) => f.as_deref(),
            _ => None,
        }
    }
}

/// Runs `probe` once under `policy` and judges every attempt by `assertions`: the code path of
/// both the scheduler and `vantage probe`. With `addresses: all`, each attempt resolves the host
/// once and probes every address it found, each judged on its own.
pub async fn run(probe: &Probe, assertions: &[Assertion], policy: &RunPolicy) -> Run {
    let locator = match policy.addresses {
        Addresses::All => probe.locator(),
        Addresses::First => None,
    };
    let shared: Arc<[Assertion]> = assertions.into();
    run_attempts(policy, |deadline| {
        let locator = locator.clone();
        let shared = Arc::clone(&shared);
        async move {
            let Some(locator) = locator else {
                return judged(probe.attempt(deadline).await, &shared);
            };
            addresses::each(&locator, deadline, |ip| {
                let pinned = probe.pin(ip);
                let shared = Arc::clone(&shared);
                async move { judged(pinned.attempt(deadline).await, &shared) }
            })
            .await
        }
    })
    .await
}

/// `outcome`, judged by `assertions`.
fn judged(mut outcome: Outcome, assertions: &[Assertion]) -> Outcome {
    assertion::judge(assertions, &mut outcome, Facts::tls, SystemTime::now());
    outcome
}
