//! The registry of probe types: [`Probe`] and [`Facts`] have one arm per type, and every
//! dispatch is a `match` over them, so a type that is added and not wired in everywhere is a
//! compile error rather than a silent gap.
//!
//! A probe type is a folder (`tcp`, `http`, `dns`, `icmp`) with a validated probe struct,
//! `async fn attempt(&self, deadline) -> Outcome<TheirFacts>`, its raw config section and
//! builder, its metric families and its report lines. What all types share (reasons, failures,
//! traces, runs) is in `outcome`; this module turns their outcomes into the registry's.

pub mod assertion;
pub mod dns;
pub mod http;
pub mod icmp;
pub mod tcp;

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::build::{Common, Context, S};
use crate::outcome::{self, run_attempts};
pub use crate::outcome::{
    Close, Event, Failure, Judged, Phases, QUOTE_LIMIT, Reason, ReasonSet, RunPolicy, Timed, Trace,
    quote,
};
use crate::tls::TlsFacts;
use crate::tls::config::RawTls;
pub use assertion::Assertion;
use dns::DnsFacts;
use dns::config::RawDns;
use http::HttpFacts;
use http::config::RawHttp;
use icmp::IcmpFacts;
use icmp::config::RawIcmp;
use tcp::TcpFacts;
use tcp::config::RawTcp;

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
            Kind::Tcp => matches!(key, Host | Port | Tls | Tcp),
            Kind::Http => matches!(key, Url | Tls | Http),
            Kind::Dns => matches!(key, Host),
            Kind::Icmp => matches!(key, Host | Icmp),
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
            Probe::Dns(p) => p.attempt(deadline).await.map_facts(Facts::Dns),
            Probe::Icmp(p) => p.attempt(deadline).await.map_facts(Facts::Icmp),
        }
    }
}

/// What an attempt observed beyond the common trace: its probe type's facts.
#[derive(Debug, Clone, Default)]
pub enum Facts {
    /// The attempt observed nothing of its type (it never ran, or was cut off).
    #[default]
    None,
    Tcp(TcpFacts),
    Http(Box<HttpFacts>),
    Dns(Option<DnsFacts>),
    Icmp(Option<IcmpFacts>),
}

impl Facts {
    /// What the TLS handshake revealed, for targets with TLS that got that far; for HTTP, the
    /// last https hop's.
    pub fn tls(&self) -> Option<&TlsFacts> {
        match self {
            Facts::Tcp(f) => f.tls.as_ref(),
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
            Facts::Dns(f) => f.as_ref(),
            _ => None,
        }
    }

    /// The echoes of an icmp probe.
    pub fn icmp(&self) -> Option<&IcmpFacts> {
        match self {
            Facts::Icmp(f) => f.as_ref(),
            _ => None,
        }
    }
}

/// Runs `probe` once under `policy` and judges every attempt by `assertions`: the code path of
/// both the scheduler and `vantage probe`.
pub async fn run(probe: &Probe, assertions: &[Assertion], policy: &RunPolicy) -> Run {
    run_attempts(policy, |deadline| async move {
        let mut outcome = probe.attempt(deadline).await;
        assertion::judge(assertions, &mut outcome, Facts::tls, SystemTime::now());
        outcome
    })
    .await
}
