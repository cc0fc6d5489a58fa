//! A module's `allow` list: whom `/probe` may reach with it. `/probe` lets whoever can call it
//! choose the target, so without a list a module is refused there, and with one a target must
//! be a host the list names, or an address in its networks (a name: the address it resolves
//! to, which the probe is then pinned to), on a port it lists.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::build::{Context, S};
use crate::net::Host;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllow {
    /// CIDRs (`10.0.0.0/8`, `::1/128`) or single addresses.
    pub networks: Option<Vec<S<String>>>,
    /// Host names, exactly or as `*.example.com` (any name under it).
    pub hosts: Option<Vec<S<String>>>,
    /// Ports (`443`) or inclusive ranges (`"8000-8999"`); without it, any port.
    pub ports: Option<Vec<S<PortRange>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortRange(pub u16, pub u16);

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            One(u16),
            Range(String),
        }
        let invalid = |text: &str| {
            serde::de::Error::custom(format!(
                "invalid port {text:?}: write a port (443) or a range (\"8000-8999\")"
            ))
        };
        match Written::deserialize(d)? {
            Written::One(p) => Ok(PortRange(p, p)),
            Written::Range(text) => {
                let (low, high) = match text.split_once('-') {
                    Some((l, h)) => (l.trim().parse(), h.trim().parse()),
                    None => (text.trim().parse(), text.trim().parse()),
                };
                match (low, high) {
                    (Ok(l), Ok(h)) if l <= h => Ok(PortRange(l, h)),
                    _ => Err(invalid(&text)),
                }
            }
        }
    }
}

/// A validated `allow` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allow {
    networks: Vec<(IpAddr, u8)>,
    hosts: Vec<String>,
    ports: Vec<PortRange>,
}

/// What a list says of a target before its name is resolved.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// A name the list does not name: allowed if the address it resolves to, where the probe
    /// will then connect, is in a network of the list (see [`Allow::allows_address`]).
    IfAddressesAllowed,
    Refused(String),
}

impl Allow {
    pub fn build(cx: &mut Context, raw: &S<RawAllow>, path: &str) -> Option<Allow> {
        let mut ok = true;
        let mut networks = Vec::new();
        for (i, n) in raw.value.networks.iter().flatten().enumerate() {
            match parse_network(&n.value) {
                Ok(net) => networks.push(net),
                Err(e) => {
                    cx.error(&n.referenced, format!("{path}.networks[{i}]"), e);
                    ok = false;
                }
            }
        }
        let mut hosts = Vec::new();
        for (i, h) in raw.value.hosts.iter().flatten().enumerate() {
            let name = h.value.trim().trim_end_matches('.').to_ascii_lowercase();
            let bare = name.strip_prefix("*.").unwrap_or(&name);
            if bare.is_empty() || bare.contains('*') || bare.contains(char::is_whitespace) {
                cx.error(
                    &h.referenced,
                    format!("{path}.hosts[{i}]"),
                    format!(
                        "invalid host pattern {:?}: write a name, or `*.` and a name for any \
                         name under it",
                        h.value
                    ),
                );
                ok = false;
            }
            hosts.push(name);
        }
        if networks.is_empty() && hosts.is_empty() && ok {
            cx.error(
                &raw.referenced,
                path,
                "list `networks` or `hosts` (or both): an allow list that names no one allows \
                 no one",
            );
            ok = false;
        }
        let ports = raw.value.ports.iter().flatten().map(|p| p.value).collect();
        ok.then_some(Allow {
            networks,
            hosts,
            ports,
        })
    }

    /// Whether `host` (on `port`, for types that have one) may be reached.
    pub fn check(&self, host: &Host, port: Option<u16>) -> Verdict {
        if let Some(port) = port
            && !self.ports.is_empty()
            && !self.ports.iter().any(|r| (r.0..=r.1).contains(&port))
        {
            return Verdict::Refused(format!("port {port} is not in the module's allow list"));
        }
        match host {
            Host::Ip(ip) if self.allows_address(*ip) => Verdict::Allowed,
            Host::Ip(ip) => {
                Verdict::Refused(format!("{ip} is not in the module's allowed networks"))
            }
            Host::Name(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let named = self
                    .hosts
                    .iter()
                    .any(|pattern| match pattern.strip_prefix("*.") {
                        Some(suffix) => name
                            .strip_suffix(suffix)
                            .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                        None => *pattern == name,
                    });
                if named {
                    Verdict::Allowed
                } else if self.networks.is_empty() {
                    Verdict::Refused(format!("{name} is not in the module's allowed hosts"))
                } else {
                    Verdict::IfAddressesAllowed
                }
            }
        }
    }

    pub fn allows_address(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.networks
            .iter()
            .any(|(net, prefix)| in_network(ip, *net, *prefix))
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 address it carries, so that `::ffff:10.0.0.1` is
/// not a way around `10.0.0.0/8`, nor refused by it.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn parse_network(text: &str) -> Result<(IpAddr, u8), String> {
    let invalid = || format!("invalid network {text:?}: write a CIDR (10.0.0.0/8) or an address");
    let (addr, prefix) = match text.trim().split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text.trim(), None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| invalid())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(invalid)?,
    };
    // An IPv4-mapped network is the IPv4 network it carries, as addresses are judged.
    let (ip, prefix) = match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            if prefix < 96 {
                return Err(format!(
                    "{text:?} reaches past the IPv4-mapped addresses (::ffff:0:0/96): write \
                     the IPv4 network instead"
                ));
            }
            (canonical(ip), prefix - 96)
        }
        _ => (ip, prefix),
    };
    if network_bits(ip, prefix) != bits(ip) {
        return Err(format!(
            "{text:?} has host bits set: write the network's first address (as in {})",
            show_network(ip, prefix)
        ));
    }
    Ok((ip, prefix))
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn width(ip: IpAddr) -> u32 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn network_bits(ip: IpAddr, prefix: u8) -> u128 {
    let host_bits = width(ip) - u32::from(prefix);
    let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
    bits(ip) & mask
}

fn show_network(ip: IpAddr, prefix: u8) -> String {
    let first = network_bits(ip, prefix);
    let addr = match ip {
        IpAddr::V4(_) => IpAddr::from(u32::try_from(first).unwrap_or_default().to_be_bytes()),
        IpAddr::V6(_) => IpAddr::from(first.to_be_bytes()),
    };
    format!("{addr}/{prefix}")
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    ip.is_ipv4() == net.is_ipv4() && network_bits(ip, prefix) == network_bits(net, prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(yaml: &str) -> Result<Allow, String> {
        let raw: S<RawAllow> = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        let mut cx = Context::new("test.yml");
        Allow::build(&mut cx, &raw, "allow")
            .ok_or_else(|| cx.take_errors().into_iter().next().unwrap().message)
    }

    fn host(text: &str) -> Host {
        Host::parse(text).unwrap()
    }

    #[test]
    fn networks_hosts_and_ports_decide_together() {
        let a = allow(
            "networks: [10.0.0.0/8, \"::1\"]\nhosts: [\"*.example.com\", db.internal]\n\
             ports: [443, \"8000-8999\"]",
        )
        .unwrap();
        assert_eq!(a.check(&host("10.1.2.3"), Some(443)), Verdict::Allowed);
        assert_eq!(a.check(&host("::1"), Some(8500)), Verdict::Allowed);
        assert_eq!(a.check(&host("www.example.com"), None), Verdict::Allowed);
        assert_eq!(
            a.check(&host("A.B.Example.COM."), Some(443)),
            Verdict::Allowed
        );
        assert_eq!(a.check(&host("db.internal"), Some(8000)), Verdict::Allowed);
        assert_eq!(
            a.check(&host("other.net"), Some(443)),
            Verdict::IfAddressesAllowed
        );
        for (h, port) in [
            ("10.1.2.3", Some(22)),
            ("11.0.0.1", Some(443)),
            ("example.com", Some(9000)),
        ] {
            assert!(
                matches!(a.check(&host(h), port), Verdict::Refused(_)),
                "{h} {port:?}"
            );
        }
        // `*.example.com` is names under it, not the name itself nor a look-alike.
        assert_eq!(
            a.check(&host("badexample.com"), None),
            Verdict::IfAddressesAllowed
        );
        assert!(a.allows_address("10.255.255.255".parse().unwrap()));
        assert!(a.allows_address("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!a.allows_address("11.0.0.0".parse().unwrap()));
        assert!(!a.allows_address("::2".parse().unwrap()));
    }

    #[test]
    fn hosts_only_refuses_other_names_outright() {
        let a = allow("hosts: [localhost]").unwrap();
        assert!(matches!(a.check(&host("other"), None), Verdict::Refused(_)));
        assert!(matches!(
            a.check(&host("127.0.0.1"), None),
            Verdict::Refused(_)
        ));
    }

    #[test]
    fn mistakes_are_named() {
        for (yaml, says) in [
            (
                "networks: [10.0.0.1/8]",
                "host bits set: write the network's first address (as in 10.0.0.0/8)",
            ),
            ("networks: [10.0.0.0/33]", "invalid network"),
            ("networks: [example.com]", "invalid network"),
            ("hosts: [\"*\"]", "invalid host pattern"),
            ("hosts: [\"a.*.com\"]", "invalid host pattern"),
            ("ports: [443]", "names no one allows no one"),
            ("networks: [::/0]\nports: [\"9-1\"]", "invalid port"),
        ] {
            let err = allow(yaml).unwrap_err();
            assert!(err.contains(says), "{yaml}: {err}");
        }
        assert!(allow("networks: [0.0.0.0/0, ::/0]").is_ok());
        assert!(allow("networks: [\"::ffff:0:0/95\"]").is_err());
    }

    #[test]
    fn an_ipv4_mapped_network_is_the_ipv4_network_it_carries() {
        let a = allow("networks: [\"::ffff:10.0.0.1\", \"::ffff:192.168.0.0/112\"]").unwrap();
        assert!(a.allows_address("10.0.0.1".parse().unwrap()));
        assert!(a.allows_address("::ffff:10.0.0.1".parse().unwrap()));
        assert!(a.allows_address("192.168.3.4".parse().unwrap()));
        for outside in ["10.0.0.2", "11.0.0.1", "192.169.0.0", "::1"] {
            assert!(!a.allows_address(outside.parse().unwrap()), "{outside}");
        }
    }
}
