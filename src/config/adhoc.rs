//! The targets of `vantage probe` that come from the command line rather than the config:
//! built by the same type builders as the config's, so that every default has one source, and
//! a configured target pointed at another address (by its type, through the registry).

use std::borrow::Cow;
use std::time::Duration;

use super::builder::DEFAULT_RETRY_DELAY;
use super::target::{Labels, Target};
use crate::build::{Common, Context, Location, Origin, S, Setting};
use crate::net::{self, IpVersion};
use crate::probe::tcp::starttls::Dialect;
use crate::probe::{Addresses, Kind, Probe, RunPolicy, Sections};
use crate::tls::config::RawTls;

/// A value from the command line: it was written nowhere in a file.
fn given<T>(value: T) -> S<T> {
    S::new(value, Location::UNKNOWN)
}

impl Target {
    /// A target from the command line (`vantage probe HOST:PORT [--type=tls]`): a bare TCP
    /// connect, or a TLS handshake with the default options (verified, SNI from the host).
    pub fn adhoc_tcp(
        address: &str,
        tls: bool,
        starttls: Option<Dialect>,
        timeout: Duration,
        location: &str,
    ) -> Result<Target, String> {
        let (host, port) = net::parse_host_port(address)?;
        let (host, port) = (given(host.to_string()), given(i64::from(port)));
        let tls = (tls || starttls.is_some()).then(|| {
            given(RawTls {
                starttls: starttls.map(given),
                ..RawTls::default()
            })
        });
        let sections = Sections {
            tls: tls.as_ref(),
            ..Sections::default()
        };
        let keys = Keys {
            host: Some(&host),
            port: Some(&port),
            ..Keys::default()
        };
        Target::adhoc(Kind::Tcp, keys, &sections, timeout, location)
    }

    /// A target from the command line (`vantage probe URL`): a GET with the default options,
    /// following redirects, expecting 200-299.
    pub fn adhoc_http(text: &str, timeout: Duration, location: &str) -> Result<Target, String> {
        let url = given(text.to_string());
        let keys = Keys {
            url: Some(&url),
            ..Keys::default()
        };
        Target::adhoc(Kind::Http, keys, &Sections::default(), timeout, location)
    }

    /// `vantage probe HOST --type=icmp`: the icmp defaults (three echoes, failing only when
    /// none returns).
    pub fn adhoc_icmp(host: &str, timeout: Duration, location: &str) -> Result<Target, String> {
        let host = given(host.trim().to_string());
        let keys = Keys {
            host: Some(&host),
            ..Keys::default()
        };
        Target::adhoc(Kind::Icmp, keys, &Sections::default(), timeout, location)
    }

    /// `vantage probe NAME --type=dns`: the dns defaults (NAME's A records from the system's
    /// resolver).
    pub fn adhoc_dns(name: &str, timeout: Duration, location: &str) -> Result<Target, String> {
        let host = given(name.trim().to_string());
        let keys = Keys {
            host: Some(&host),
            ..Keys::default()
        };
        Target::adhoc(Kind::Dns, keys, &Sections::default(), timeout, location)
    }

    /// Builds `kind`'s probe from the given keys; the first error the builder reports is the
    /// answer, without a file position (there is no file).
    fn adhoc(
        kind: Kind,
        keys: Keys,
        sections: &Sections,
        timeout: Duration,
        location: &str,
    ) -> Result<Target, String> {
        let common = Common {
            path: "",
            at: Location::UNKNOWN,
            host: keys.host,
            port: keys.port,
            url: keys.url,
            ip_version: IpVersion::Auto,
            timeout: Setting {
                value: timeout,
                origin: Origin::Target(Location::UNKNOWN),
            },
            resolver: Some(None),
        };
        let mut cx = Context::new("");
        let probe = kind.build(&mut cx, &common, sections);
        if let Some(error) = cx.take_errors().into_iter().next() {
            return Err(error.message);
        }
        let probe = probe.ok_or_else(|| format!("cannot build a {} check", kind.as_str()))?;
        Ok(Target::new(
            "adhoc".to_string(),
            probe,
            RunPolicy {
                timeout,
                retries: 0,
                retry_delay: DEFAULT_RETRY_DELAY,
                addresses: Addresses::First,
            },
            // Runs once: the interval only keeps the invariant that a run ends before the next.
            timeout + Duration::from_secs(1),
            None,
            Vec::new(),
            location,
            &Default::default(),
        ))
    }

    /// The same check, pointed at another `HOST:PORT` (`vantage probe --name=X HOST:PORT`).
    pub fn retarget(&self, address: &str) -> Result<Target, String> {
        Ok(self.running(self.probe.retarget(address)?, self.policy))
    }

    /// The same target running `probe` (the same check, aimed elsewhere) under `policy`: its
    /// `target` label follows the probe. Made for one run, so with no fingerprint.
    pub fn running(&self, probe: Probe, policy: RunPolicy) -> Target {
        let target_label = probe.target();
        let labels: Vec<(&str, Cow<str>)> = self
            .labels
            .iter()
            .map(|(k, v)| match k {
                "target" => (k, Cow::Borrowed(target_label.as_str())),
                _ => (k, v),
            })
            .collect();
        let labels = Labels::new(&labels);
        Target {
            name: self.name.clone(),
            probe,
            policy,
            interval: self.interval,
            interval_on_failure: self.interval_on_failure,
            assertions: self.assertions.clone(),
            labels,
            failure_reasons: self.failure_reasons,
            fingerprint: 0,
        }
    }
}

/// The shared keys a command-line target gives.
#[derive(Default)]
struct Keys<'a> {
    host: Option<&'a S<String>>,
    port: Option<&'a S<i64>>,
    url: Option<&'a S<String>>,
}
