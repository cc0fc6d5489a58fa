//! The targets of `vantage probe` that come from the command line rather than the config:
//! built by the same type builders as the config's, so that every default has one source, and
//! a configured target pointed at another address.

use std::time::Duration;

use serde_saphyr::Location;

use super::Target;
use super::builder::DEFAULT_RETRY_DELAY;
use crate::build::{Common, Context, Origin, S, Setting};
use crate::net::{Host, IpVersion};
use crate::probe::dns::config::question_name;
use crate::probe::http::Url;
use crate::probe::tcp::TcpProbe;
use crate::probe::tcp::starttls::Dialect;
use crate::probe::{Kind, Probe, RunPolicy, Sections};
use crate::tls::config::RawTls;

/// A value from the command line: it was written nowhere in a file.
fn given<T>(value: T) -> S<T> {
    S::new(value, Location::UNKNOWN, Location::UNKNOWN)
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
        let (host, port) = parse_address(address)?;
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
        let probe = match &self.probe {
            Probe::Tcp(tcp) => {
                let (host, port) = parse_address(address)?;
                Probe::Tcp(TcpProbe {
                    tls: match &tcp.tls {
                        Some(tls) => Some(tls.client.target(&host)?),
                        None => None,
                    },
                    host,
                    port,
                    ..tcp.clone()
                })
            }
            Probe::Icmp(icmp) => Probe::Icmp(crate::probe::icmp::IcmpProbe {
                host: Host::parse(address.trim())?,
                ..icmp.clone()
            }),
            Probe::Dns(dns) => Probe::Dns(Box::new(crate::probe::dns::DnsProbe {
                written: address.trim().to_string(),
                name: question_name(&Host::parse(address.trim())?, dns.record_type)?,
                ..(**dns).clone()
            })),
            Probe::Http(http) => {
                let url = Url::parse(address.trim())?;
                Probe::Http(Box::new(crate::probe::http::HttpProbe {
                    tls: http.tls.client.target(&url.host)?,
                    url,
                    written: address.trim().to_string(),
                    ..(**http).clone()
                }))
            }
        };
        let target_label = probe.target();
        let labels = self
            .labels
            .iter()
            .map(|(k, v)| {
                let v = if k == "target" { &target_label } else { v };
                (k.clone(), v.clone())
            })
            .collect();
        Ok(Target {
            name: self.name.clone(),
            probe,
            policy: self.policy,
            interval: self.interval,
            interval_on_failure: self.interval_on_failure,
            assertions: self.assertions.clone(),
            labels,
            fingerprint: 0,
        })
    }
}

/// The shared keys a command-line target gives.
#[derive(Default)]
struct Keys<'a> {
    host: Option<&'a S<String>>,
    port: Option<&'a S<i64>>,
    url: Option<&'a S<String>>,
}

/// `HOST:PORT`, with IPv6 literals bracketed (`[::1]:6379`).
fn parse_address(text: &str) -> Result<(Host, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not HOST:PORT"))?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{text:?}: the port must be a number from 1 to 65535"))?;
    if host.contains(':') && !host.starts_with('[') {
        return Err(format!(
            "{text:?}: write IPv6 addresses in brackets, e.g. [::1]:{port}"
        ));
    }
    Ok((Host::parse(host)?, port))
}
