//! Name resolution: the system resolver, or a target's own DNS server, picking the one address
//! a run connects to, or listing every address for a run that probes them all.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::addr::{Host, IpVersion, check_destination, no_single_host};
use super::dns;
use super::socket::connect;
use crate::outcome::{Failure, Reason, Trace};

/// The address a run will connect to, and how long finding it took.
#[derive(Debug, Clone, Copy)]
pub struct Resolved {
    pub addr: SocketAddr,
    /// `None` for IP literals: no lookup happened.
    pub lookup: Option<Duration>,
}

/// Resolves `host` with the system resolver and picks one address.
///
/// A run probes exactly one address, so a failure names the address that failed instead of
/// being hidden by a fallback to another backend. `auto` prefers IPv4 and falls back to IPv6
/// only when the name has no IPv4 address.
pub async fn resolve(
    host: &Host,
    port: u16,
    ip_version: IpVersion,
    resolver: Option<dns::Server>,
    deadline: Instant,
) -> Result<Resolved, Failure> {
    let name = match host {
        Host::Ip(ip) => {
            if !ip_version.accepts(*ip) {
                return Err(Failure::new(
                    Reason::DnsError,
                    format!("{ip} is not an IPv{ip_version} address"),
                ));
            }
            check_destination(*ip).map_err(|e| Failure::new(Reason::DnsError, e))?;
            return Ok(Resolved {
                addr: SocketAddr::new(*ip, port),
                lookup: None,
            });
        }
        Host::Name(name) => name,
    };
    if let Some(server) = resolver {
        return ask_server(name, port, ip_version, server, deadline).await;
    }
    let start = Instant::now();
    let addrs = system_lookup(name, port, deadline).await?;
    let lookup = start.elapsed();
    let pick = |want_v4: bool| addrs.iter().copied().find(|a| a.is_ipv4() == want_v4);
    let addr = match ip_version {
        IpVersion::Auto => pick(true).or_else(|| pick(false)),
        IpVersion::V4 => pick(true),
        IpVersion::V6 => pick(false),
    };
    match addr {
        Some(addr) => {
            resolved_to(name, &[addr.ip()])?;
            Ok(Resolved {
                addr,
                lookup: Some(lookup),
            })
        }
        None => Err(Failure::new(
            Reason::DnsError,
            match ip_version {
                IpVersion::Auto => format!("{name} has no addresses"),
                v => format!("{name} has no IPv{v} address"),
            },
        )),
    }
}

/// Resolves `name` by asking `server` (a target's `dns.server`): A records, and with `auto`
/// AAAA records when there is no A record; the lookup is timed from the first question.
async fn ask_server(
    name: &str,
    port: u16,
    ip_version: IpVersion,
    server: dns::Server,
    deadline: Instant,
) -> Result<Resolved, Failure> {
    let start = Instant::now();
    let ips = ask_for(name, ip_version, server, false, deadline).await?;
    resolved_to(name, &ips[..1])?;
    Ok(Resolved {
        addr: SocketAddr::new(ips[0], port),
        lookup: Some(start.elapsed()),
    })
}

/// The addresses `server` knows for `name` in the families `ip_version` allows, IPv4 first:
/// with `every`, all of them (both families for `auto`); otherwise the first family that has
/// any. Never empty.
async fn ask_for(
    name: &str,
    ip_version: IpVersion,
    server: dns::Server,
    every: bool,
    deadline: Instant,
) -> Result<Vec<IpAddr>, Failure> {
    let mut fqdn = Name::from_ascii(name)
        .map_err(|e| Failure::new(Reason::DnsError, format!("{name} is not a DNS name: {e}")))?;
    fqdn.set_fqdn(true);
    let questions: &[RecordType] = match ip_version {
        IpVersion::Auto => &[RecordType::A, RecordType::AAAA],
        IpVersion::V4 => &[RecordType::A],
        IpVersion::V6 => &[RecordType::AAAA],
    };
    let mut found = Vec::new();
    for &record_type in questions {
        // Only the probe's own connection belongs in its trace, not the resolver's.
        let reply = dns::ask(server, &fqdn, record_type, deadline, &mut Trace::start()).await?;
        if reply.rcode() != ResponseCode::NoError {
            return Err(Failure::new(
                Reason::DnsError,
                format!(
                    "{} answered {} for {name}",
                    server.addr,
                    dns::rcode_name(reply.rcode())
                ),
            ));
        }
        let wanted = |ip: &IpAddr| ip.is_ipv4() == (record_type == RecordType::A);
        found.extend(reply.addresses().into_iter().filter(wanted));
        if !found.is_empty() && !every {
            return Ok(found);
        }
    }
    if found.is_empty() {
        return Err(Failure::new(
            Reason::DnsError,
            match ip_version {
                IpVersion::Auto => format!("{} knows no address for {name}", server.addr),
                v => format!("{} knows no IPv{v} address for {name}", server.addr),
            },
        ));
    }
    Ok(unique(found))
}

/// Every address of `host` in the families `ip_version` allows (both for `auto`), IPv4 first,
/// each once, and how long the lookup took (`None` for an IP literal): what a run with
/// `addresses: all` probes. One lookup, however many addresses.
pub async fn resolve_every(
    host: &Host,
    ip_version: IpVersion,
    resolver: Option<dns::Server>,
    deadline: Instant,
) -> Result<(Vec<IpAddr>, Option<Duration>), Failure> {
    let name = match host {
        Host::Ip(_) => {
            let one = resolve(host, 0, ip_version, resolver, deadline).await?;
            return Ok((vec![one.addr.ip()], None));
        }
        Host::Name(name) => name,
    };
    let start = Instant::now();
    let ips = match resolver {
        Some(server) => ask_for(name, ip_version, server, true, deadline).await?,
        None => {
            let all = system_lookup(name, 0, deadline).await?;
            let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) =
                all.iter().map(SocketAddr::ip).partition(IpAddr::is_ipv4);
            let ips: Vec<IpAddr> = v4
                .into_iter()
                .chain(v6)
                .filter(|ip| ip_version.accepts(*ip))
                .collect();
            if ips.is_empty() {
                return Err(Failure::new(
                    Reason::DnsError,
                    match ip_version {
                        IpVersion::Auto => format!("{name} has no addresses"),
                        v => format!("{name} has no IPv{v} address"),
                    },
                ));
            }
            unique(ips)
        }
    };
    resolved_to(name, &ips)?;
    Ok((ips, Some(start.elapsed())))
}

/// Fails when `name` resolved to an address that names no single host (see
/// [`check_destination`]): connecting to `0.0.0.0` reaches this machine, so a probe would
/// report on the wrong host. DNS filters answer blocked names with it.
fn resolved_to(name: &str, ips: &[IpAddr]) -> Result<(), Failure> {
    match ips.iter().find_map(|&ip| Some((ip, no_single_host(ip)?))) {
        None => Ok(()),
        Some((ip, what)) => Err(Failure::new(
            Reason::DnsError,
            format!("{name} resolves to {ip}, {what} (a DNS filter's answer for a blocked name?)"),
        )),
    }
}

/// `ips` without repeats, in their first order.
fn unique(ips: Vec<IpAddr>) -> Vec<IpAddr> {
    let mut seen = std::collections::HashSet::new();
    ips.into_iter().filter(|ip| seen.insert(*ip)).collect()
}

/// Asks the system resolver for `name`.
async fn system_lookup(
    name: &str,
    port: u16,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, Failure> {
    match timeout_at(deadline, tokio::net::lookup_host((name, port))).await {
        Err(_) => Err(Failure::new(
            Reason::DnsError,
            format!("looking up {name} did not finish before the deadline"),
        )),
        Ok(Err(e)) => Err(Failure::new(
            Reason::DnsError,
            format!("looking up {name}: {e}"),
        )),
        Ok(Ok(addrs)) => Ok(addrs.collect()),
    }
}

/// Resolves `host` for a probe and records the lookup time and the chosen address in `trace`.
pub async fn locate(
    host: &Host,
    port: u16,
    ip_version: IpVersion,
    resolver: Option<dns::Server>,
    deadline: Instant,
    trace: &mut Trace,
) -> Result<SocketAddr, Failure> {
    let resolved = resolve(host, port, ip_version, resolver, deadline).await?;
    trace.phases.dns = resolved.lookup.into();
    trace.address = Some(resolved.addr);
    Ok(resolved.addr)
}

/// Resolves and connects, recording both phases and the address in `trace`.
pub async fn open(
    host: &Host,
    port: u16,
    ip_version: IpVersion,
    resolver: Option<dns::Server>,
    deadline: Instant,
    trace: &mut Trace,
) -> Result<TcpStream, Failure> {
    let addr = locate(host, port, ip_version, resolver, deadline, trace).await?;
    let (stream, connect) = connect(addr, deadline).await?;
    trace.phases.connect = connect.into();
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ip_literal_skips_the_lookup() {
        let host = Host::parse("127.0.0.1").unwrap();
        let resolved = resolve(
            &host,
            9,
            IpVersion::Auto,
            None,
            Instant::now() + Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert_eq!(resolved.addr, "127.0.0.1:9".parse().unwrap());
        assert!(resolved.lookup.is_none());
    }

    #[tokio::test]
    async fn an_address_that_names_no_host_fails_before_connecting() {
        let deadline = Instant::now() + Duration::from_secs(1);
        for literal in ["0.0.0.0", "::", "255.255.255.255", "224.0.0.1"] {
            let host = Host::parse(literal).unwrap();
            let failure = resolve(&host, 80, IpVersion::Auto, None, deadline)
                .await
                .unwrap_err();
            assert_eq!(failure.reason, Reason::DnsError);
            assert!(
                failure.detail.contains("a probe checks one host"),
                "{failure:?}"
            );
        }
        let failure = resolved_to("ads.example", &["0.0.0.0".parse().unwrap()]).unwrap_err();
        assert!(
            failure
                .detail
                .starts_with("ads.example resolves to 0.0.0.0, the unspecified"),
            "{failure:?}"
        );
    }

    #[tokio::test]
    async fn ip_literal_of_the_wrong_family_fails_clearly() {
        let host = Host::parse("127.0.0.1").unwrap();
        let failure = resolve(
            &host,
            9,
            IpVersion::V6,
            None,
            Instant::now() + Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert_eq!(failure.reason, Reason::DnsError);
    }

    #[tokio::test]
    async fn localhost_resolves_and_is_timed() {
        let host = Host::parse("localhost").unwrap();
        let resolved = resolve(
            &host,
            9,
            IpVersion::V4,
            None,
            Instant::now() + Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert!(resolved.addr.ip().is_loopback());
        assert!(resolved.lookup.is_some());
    }
}
