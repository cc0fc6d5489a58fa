//! Addresses as targets write them: a host (name or IP literal), the IP version to use, and a
//! DNS server's address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Deserialize;
use serde::de::{self, Visitor};

/// Where a target lives: an address, or a name to resolve on every run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Host {
    /// Refuses an IP literal that names no single host (see [`check_destination`]), for a host
    /// to connect to or ping; a name is checked once resolved.
    pub fn check_destination(&self) -> Result<(), String> {
        match self {
            Host::Ip(ip) => check_destination(*ip),
            Host::Name(_) => Ok(()),
        }
    }

    /// Accepts a DNS name or an IP literal; IPv6 literals may be bracketed.
    pub fn parse(text: &str) -> Result<Host, String> {
        let unbracketed = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if text.is_empty() {
            return Err("host is empty".to_string());
        }
        if text.contains("://") {
            return Err(format!(
                "host {text:?} looks like a URL: give only the name, and the port in `port`"
            ));
        }
        if let Some((name, port)) = text.rsplit_once(':')
            && port.parse::<u16>().is_ok()
        {
            return Err(format!(
                "host {text:?} includes a port: write `host: {name}` and `port: {port}`"
            ));
        }
        let valid_label = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let name = text.strip_suffix('.').unwrap_or(text);
        if name.len() > 253 || !name.split('.').all(valid_label) {
            return Err(format!(
                "host {text:?} is neither an IP address nor a DNS name"
            ));
        }
        // The resolver reads `010.0.0.1` as octal (8.0.0.1) and `127.1` as 127.0.0.1, so the
        // target label would name one address while another is probed. No real name ends in
        // an all-numeric label.
        let last = name.rsplit('.').next().unwrap_or(name);
        if last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x") {
            return Err(format!(
                "host {text:?} looks like an IPv4 address but is not one in the usual form \
                 (four decimal numbers without leading zeros, such as 10.0.0.8)"
            ));
        }
        Ok(Host::Name(text.to_string()))
    }

    /// `host:port`, with IPv6 literals bracketed: the `target` label of tcp probes.
    pub fn with_port(&self, port: u16) -> String {
        match self {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
            Host::Ip(ip) => format!("{ip}:{port}"),
            Host::Name(name) => format!("{name}:{port}"),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => ip.fmt(f),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// Which address family a target is probed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum IpVersion {
    /// IPv4 when the name has an IPv4 address, IPv6 otherwise.
    #[default]
    Auto,
    V4,
    V6,
}

impl IpVersion {
    pub fn accepts(self, ip: IpAddr) -> bool {
        match self {
            IpVersion::Auto => true,
            IpVersion::V4 => ip.is_ipv4(),
            IpVersion::V6 => ip.is_ipv6(),
        }
    }
}

impl fmt::Display for IpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpVersion::Auto => "auto",
            IpVersion::V4 => "4",
            IpVersion::V6 => "6",
        })
    }
}

impl<'de> Deserialize<'de> for IpVersion {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IpVersionVisitor;

        impl Visitor<'_> for IpVersionVisitor {
            type Value = IpVersion;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("auto, 4 or 6")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<IpVersion, E> {
                match text {
                    "auto" => Ok(IpVersion::Auto),
                    "4" => Ok(IpVersion::V4),
                    "6" => Ok(IpVersion::V6),
                    other => Err(E::custom(format!(
                        "ip_version {other:?} is not one of auto, 4, 6"
                    ))),
                }
            }

            fn visit_u64<E: de::Error>(self, number: u64) -> Result<IpVersion, E> {
                self.visit_str(&number.to_string())
            }

            fn visit_i64<E: de::Error>(self, number: i64) -> Result<IpVersion, E> {
                self.visit_str(&number.to_string())
            }
        }

        deserializer.deserialize_any(IpVersionVisitor)
    }
}

/// `probe_ip_protocol`: 4 or 6.
pub fn ip_protocol(ip: IpAddr) -> f64 {
    if ip.is_ipv4() { 4.0 } else { 6.0 }
}

/// `probe_ip_addr_hash`, as blackbox_exporter computes it so that both can be compared: the
/// 32-bit FNV-1a hash of the address's bytes (4 for IPv4, an IPv4-mapped IPv6 address
/// included, as Go's `To4` gives them; else 16), as a float. It changes when a name moves to
/// another address.
pub fn ip_hash(ip: IpAddr) -> f64 {
    let bytes = match ip.to_canonical() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    let hash = bytes.iter().fold(0x811c_9dc5_u32, |hash, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    f64::from(hash)
}

/// Refuses an address that names no single host, as a destination to connect to, ping or ask:
/// the unspecified address (`0.0.0.0`, `::`; Linux quietly connects it to this machine, so the
/// probe would watch the wrong host), the limited broadcast `255.255.255.255` and multicast
/// addresses (answered, if at all, by any number of hosts from their own addresses). A
/// subnet's directed broadcast cannot be told without its netmask and is not caught.
pub fn check_destination(ip: IpAddr) -> Result<(), String> {
    match no_single_host(ip) {
        None => Ok(()),
        Some(what) => Err(format!(
            "{} is {what}: a probe checks one host, so give the address of one",
            ip.to_canonical()
        )),
    }
}

/// What `ip` is when it names no single host (see [`check_destination`]).
pub fn no_single_host(ip: IpAddr) -> Option<&'static str> {
    let ip = ip.to_canonical();
    if ip.is_unspecified() {
        Some("the unspecified address, which names no host")
    } else if ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        Some("the broadcast address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else {
        None
    }
}

/// A DNS server as configured: an IP address, with `:port` when it is not 53 (IPv6 in
/// brackets). Not a name: resolving the resolver would need a resolver. Not multicast either:
/// the query goes over a connected socket, which drops answers from any other address.
pub fn parse_dns_server(text: &str) -> Result<SocketAddr, String> {
    let addr = match text.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, 53),
        Err(_) => text.parse::<SocketAddr>().map_err(|_| {
            format!("{text:?} is not an IP address with an optional port, such as 10.0.0.53 or [2001:db8::53]:5353")
        })?,
    };
    if addr.port() == 0 {
        return Err(format!("{text:?}: the port must be from 1 to 65535"));
    }
    check_destination(addr.ip())?;
    Ok(addr)
}

/// `HOST:PORT`, with IPv6 literals bracketed (`[::1]:6379`).
pub fn parse_host_port(text: &str) -> Result<(Host, u16), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_accepts_names_and_literals() {
        assert_eq!(
            Host::parse("127.0.0.1"),
            Ok(Host::Ip("127.0.0.1".parse().unwrap()))
        );
        assert_eq!(Host::parse("::1"), Ok(Host::Ip("::1".parse().unwrap())));
        assert_eq!(Host::parse("[::1]"), Ok(Host::Ip("::1".parse().unwrap())));
        assert_eq!(
            Host::parse("db-1.internal.example.com."),
            Ok(Host::Name("db-1.internal.example.com.".into()))
        );
        assert_eq!(Host::parse("_sip._tcp.example.com").map(|_| ()), Ok(()));
    }

    #[test]
    fn host_refuses_ports_urls_and_garbage_with_a_hint() {
        assert!(
            Host::parse("example.com:443")
                .unwrap_err()
                .contains("port: 443")
        );
        assert!(
            Host::parse("https://example.com")
                .unwrap_err()
                .contains("URL")
        );
        for bad in [
            "",
            "exa mple.com",
            "a..b",
            "ex/ample",
            "010.0.0.1",
            "127.1",
            "10.0.0.010",
            "0x7f.1",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn issue_23_destinations_that_name_no_single_host_are_refused() {
        let check = |s: &str| check_destination(s.parse().unwrap());
        for fine in [
            "127.0.0.1",
            "10.0.0.255",
            "::1",
            "2001:db8::1",
            "169.254.1.1",
        ] {
            assert_eq!(check(fine), Ok(()), "{fine}");
        }
        assert_eq!(
            check("0.0.0.0").unwrap_err(),
            "0.0.0.0 is the unspecified address, which names no host: a probe checks one host, \
             so give the address of one"
        );
        assert!(check("::").unwrap_err().contains("unspecified"));
        assert!(check("::ffff:0.0.0.0").unwrap_err().contains("unspecified"));
        assert!(check("255.255.255.255").unwrap_err().contains("broadcast"));
        for multicast in ["224.0.0.1", "239.255.255.250", "ff02::1"] {
            assert!(
                check(multicast).unwrap_err().contains("multicast"),
                "{multicast}"
            );
        }
        assert!(parse_dns_server("224.0.0.251:5353").is_err());
        assert!(parse_dns_server("0.0.0.0").is_err());
        assert!(parse_dns_server("[2001:db8::53]:5353").is_ok());
    }

    /// The expected values come from an independent FNV-1a implementation (Python, over the
    /// same bytes; it gives the published 0xe40c292c for "a").
    #[test]
    fn ip_hash_is_fnv1a_32_of_the_address_bytes() {
        const FNV_127_0_0_1: u32 = 3_668_918_509;
        const FNV_127_0_0_11: u32 = 3_501_142_319;
        const FNV_V6_LOOPBACK: u32 = 1_751_717_746;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(ip_hash(ip("127.0.0.1")), f64::from(FNV_127_0_0_1));
        assert_eq!(ip_hash(ip("127.0.0.11")), f64::from(FNV_127_0_0_11));
        assert_eq!(ip_hash(ip("::1")), f64::from(FNV_V6_LOOPBACK));
        assert_ne!(ip_hash(ip("127.0.0.11")), ip_hash(ip("127.0.0.12")));
        assert_eq!(
            ip_hash(ip("::ffff:127.0.0.1")),
            f64::from(FNV_127_0_0_1),
            "as Go's To4"
        );
        assert_eq!(ip_protocol(ip("127.0.0.1")), 4.0);
        assert_eq!(ip_protocol(ip("::1")), 6.0);
    }

    #[test]
    fn target_label_brackets_ipv6() {
        assert_eq!(Host::parse("::1").unwrap().with_port(80), "[::1]:80");
        assert_eq!(
            Host::parse("10.0.0.1").unwrap().with_port(80),
            "10.0.0.1:80"
        );
        assert_eq!(Host::parse("redis").unwrap().with_port(6379), "redis:6379");
    }
}
