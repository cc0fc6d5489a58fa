//! Pointing a module at what a `/probe` caller asks for, within the module's allow list.
//!
//! The target means what it means to blackbox_exporter: a URL for http (`http://` when it has
//! no scheme), `host:port` for tcp, a host for icmp, and for dns the server to ask (`host` or
//! `host:port`, port 53), when the module names the question (`host` in the module); a dns
//! module without a `host` asks its own server about the target instead. `hostname` is the
//! name http sends (`Host`, SNI) while it connects to the target's address.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Module;
use crate::config::allow::{Allow, Verdict};
use crate::net::{self, Host, IpVersion, dns};
use crate::probe::Probe;
use crate::probe::http::Url;

/// Why a request is not run: the answer's status and its words.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the request does not say what to probe in a way the module takes.
    Bad(String),
    /// 403: the module may not reach it.
    Forbidden(String),
}

/// What a caller asked for.
pub struct Ask<'a> {
    pub target: &'a str,
    pub hostname: Option<&'a str>,
}

/// The probe to run, and what aiming it did that the run will not do again.
pub struct Aimed {
    pub probe: Probe,
    /// Pinned to the address the allow list was checked against: the run must probe that one
    /// address only, whatever the module's `addresses` says.
    pub pinned: bool,
    /// The lookup of the target's name done here, which the pinned run does not repeat.
    pub lookup: Option<Duration>,
}

impl Aimed {
    fn as_is(probe: Probe) -> Aimed {
        Aimed {
            probe,
            pinned: false,
            lookup: None,
        }
    }
}

/// The module's probe aimed at the caller's target, pinned to an address the allow list was
/// checked against when the name is not one the list names.
pub async fn aim(module: &Module, ask: &Ask<'_>, within: Duration) -> Result<Aimed, Refusal> {
    let Some(allow) = &module.allow else {
        return Err(Refusal::Forbidden(format!(
            "module {:?} has no allow list, so /probe does not run it: give it `allow` \
             (networks, hosts, ports) in the config",
            module.name
        )));
    };
    let template = &module.template.probe;
    let target = ask.target.trim();
    let bad = |e: String| Refusal::Bad(format!("target {target:?}: {e}"));
    if ask.hostname.is_some() && !matches!(template, Probe::Http(_)) {
        return Err(Refusal::Bad(
            "hostname applies to http modules only".to_string(),
        ));
    }
    let (probe, host, port) = match template {
        Probe::Http(_) => {
            let written = if target.contains("://") {
                target.to_string()
            } else {
                format!("http://{target}")
            };
            let mut url = Url::parse(&written).map_err(bad)?;
            let host = url.host.clone();
            let port = url.port;
            if let Some(name) = ask.hostname {
                url.host = Host::parse(name.trim())
                    .map_err(|e| Refusal::Bad(format!("hostname {name:?}: {e}")))?;
            }
            let probe = template.retarget(&url.to_string()).map_err(bad)?;
            (probe, host, Some(port))
        }
        Probe::Tcp(_) => {
            let (host, port) = net::parse_host_port(target).map_err(bad)?;
            (template.retarget(target).map_err(bad)?, host, Some(port))
        }
        Probe::Icmp(_) => {
            let host = Host::parse(target).map_err(bad)?;
            (template.retarget(target).map_err(bad)?, host, None)
        }
        Probe::Dns(p) if module.asks_name => {
            let (host, port) = match net::parse_host_port(target) {
                Ok(found) => found,
                Err(_) => (Host::parse(target).map_err(bad)?, 53),
            };
            let (ip, _) = first_address(
                checked(allow, &host, Some(port))?,
                &host,
                p.ip_version,
                None,
                within,
            )
            .await?;
            net::check_destination(ip).map_err(bad)?;
            let mut aimed = (**p).clone();
            aimed.server = Some(SocketAddr::new(ip, port));
            return Ok(Aimed::as_is(Probe::Dns(Box::new(aimed))));
        }
        // The module's own server answers; the name asked reaches no one else.
        Probe::Dns(_) => return template.retarget(target).map(Aimed::as_is).map_err(bad),
    };
    let (ip_version, resolver) = probe
        .locator()
        .map_or((IpVersion::Auto, None), |l| (l.ip_version, l.resolver));
    let network_check = checked(allow, &host, port)?;
    // With `hostname`, the probe names another host: it must connect where the target is.
    if network_check.is_none() && ask.hostname.is_none() {
        return Ok(Aimed::as_is(probe));
    }
    let (ip, lookup) = first_address(network_check, &host, ip_version, resolver, within).await?;
    Ok(Aimed {
        probe: probe.pin(ip),
        pinned: true,
        lookup,
    })
}

/// The list's verdict on `host` and `port`: refused, allowed, or allowed if its addresses are
/// (the list to check them against).
fn checked<'a>(
    allow: &'a Allow,
    host: &Host,
    port: Option<u16>,
) -> Result<Option<&'a Allow>, Refusal> {
    match allow.check(host, port) {
        Verdict::Refused(why) => Err(Refusal::Forbidden(why)),
        Verdict::Allowed => Ok(None),
        Verdict::IfAddressesAllowed => Ok(Some(allow)),
    }
}

/// The address the probe will connect to: the first `host` resolves to (IPv4 first, as a
/// run picks); with `allow`, only when that address is in the list's networks. The probe is
/// pinned to it, so that a second lookup cannot lead it elsewhere.
async fn first_address(
    allow: Option<&Allow>,
    host: &Host,
    ip_version: IpVersion,
    resolver: Option<dns::Server>,
    within: Duration,
) -> Result<(IpAddr, Option<Duration>), Refusal> {
    let (ip, lookup) = match host {
        Host::Ip(ip) => (*ip, None),
        Host::Name(_) => {
            let (ips, lookup) = every_address(host, ip_version, resolver, within).await?;
            let first = ips
                .first()
                .copied()
                .ok_or_else(|| Refusal::Forbidden(format!("{host} has no address")))?;
            (first, lookup)
        }
    };
    match allow {
        Some(allow) if !allow.allows_address(ip) => Err(Refusal::Forbidden(format!(
            "{host} resolves to {ip}, which is not in the module's allowed networks"
        ))),
        _ => Ok((ip, lookup)),
    }
}

/// A name that cannot be resolved cannot be checked: the request is refused, saying why, since
/// running the probe would resolve it again where the check did not look.
async fn every_address(
    host: &Host,
    ip_version: IpVersion,
    resolver: Option<dns::Server>,
    within: Duration,
) -> Result<(Vec<IpAddr>, Option<Duration>), Refusal> {
    net::resolve_every(host, ip_version, resolver, Instant::now() + within)
        .await
        .map_err(|f| {
            Refusal::Forbidden(format!(
                "cannot check {host} against the allow list: {}",
                f.detail
            ))
        })
}
