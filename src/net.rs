//! Name resolution, timed connects and the mapping of socket errors to failure reasons.
//!
//! Probes see the network only through this module, so every probe type classifies a refused,
//! reset or unreachable peer the same way.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Visitor};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout_at};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};

use crate::dns;
use crate::probe::{Failure, Reason, Trace};

/// Where a target lives: an address, or a name to resolve on every run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Host {
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
    let addrs: Vec<SocketAddr> =
        match timeout_at(deadline, tokio::net::lookup_host((name.as_str(), port))).await {
            Err(_) => {
                return Err(Failure::new(
                    Reason::DnsError,
                    format!("looking up {name} did not finish before the deadline"),
                ));
            }
            Ok(Err(e)) => {
                return Err(Failure::new(
                    Reason::DnsError,
                    format!("looking up {name}: {e}"),
                ));
            }
            Ok(Ok(addrs)) => addrs.collect(),
        };
    let lookup = start.elapsed();
    let pick = |want_v4: bool| addrs.iter().copied().find(|a| a.is_ipv4() == want_v4);
    let addr = match ip_version {
        IpVersion::Auto => pick(true).or_else(|| pick(false)),
        IpVersion::V4 => pick(true),
        IpVersion::V6 => pick(false),
    };
    match addr {
        Some(addr) => Ok(Resolved {
            addr,
            lookup: Some(lookup),
        }),
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
    let mut fqdn = Name::from_ascii(name)
        .map_err(|e| Failure::new(Reason::DnsError, format!("{name} is not a DNS name: {e}")))?;
    fqdn.set_fqdn(true);
    let questions: &[RecordType] = match ip_version {
        IpVersion::Auto => &[RecordType::A, RecordType::AAAA],
        IpVersion::V4 => &[RecordType::A],
        IpVersion::V6 => &[RecordType::AAAA],
    };
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
        if let Some(ip) = reply.addresses().into_iter().find(wanted) {
            return Ok(Resolved {
                addr: SocketAddr::new(ip, port),
                lookup: Some(start.elapsed()),
            });
        }
    }
    Err(Failure::new(
        Reason::DnsError,
        match ip_version {
            IpVersion::Auto => format!("{} knows no address for {name}", server.addr),
            v => format!("{} knows no IPv{v} address for {name}", server.addr),
        },
    ))
}

/// A DNS server as configured: an IP address, with `:port` when it is not 53 (IPv6 in
/// brackets). Not a name: resolving the resolver would need a resolver.
pub fn parse_dns_server(text: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    let addr = text.parse::<SocketAddr>().map_err(|_| {
        format!("{text:?} is not an IP address with an optional port, such as 10.0.0.53 or [2001:db8::53]:5353")
    })?;
    if addr.port() == 0 {
        return Err(format!("{text:?}: the port must be from 1 to 65535"));
    }
    Ok(addr)
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
    trace.phases.dns = resolved.lookup;
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
    trace.phases.connect = Some(connect);
    Ok(stream)
}

/// Connects to `addr`, timing SYN to established.
pub async fn connect(
    addr: SocketAddr,
    deadline: Instant,
) -> Result<(TcpStream, Duration), Failure> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| Failure::io(&e, "creating a socket"))?;
    let start = Instant::now();
    match timeout_at(deadline, socket.connect(addr)).await {
        Err(_) => Err(Failure::new(
            Reason::ConnectionTimeout,
            format!("{addr} did not accept the connection before the deadline"),
        )),
        Ok(Err(e)) => Err(Failure::io(&e, &format!("connecting to {addr}"))),
        Ok(Ok(stream)) => {
            let connected = start.elapsed();
            // Each write leaves at once: Nagle would hold a request's last segment (an HTTP/2
            // HEADERS frame after the preface, a dialogue step) for the peer's delayed ACK and
            // add those 40 ms to the time measured.
            stream
                .set_nodelay(true)
                .map_err(|e| Failure::io(&e, "setting TCP_NODELAY"))?;
            Ok((stream, connected))
        }
    }
}

/// Maps a socket error to its stable reason by kind, never by message text.
pub fn classify(err: &io::Error) -> Reason {
    use io::ErrorKind::*;
    match err.kind() {
        ConnectionRefused => Reason::ConnectionRefused,
        // After a reset the kernel reports it as whichever of these the next call runs into.
        ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected => Reason::ConnectionReset,
        // The kernel gave up retransmitting (SYN or data) before our own deadline did.
        TimedOut => Reason::ConnectionTimeout,
        NetworkUnreachable | NetworkDown => Reason::NetworkUnreachable,
        HostUnreachable => Reason::HostUnreachable,
        PermissionDenied => Reason::PermissionDenied,
        _ => Reason::IoError,
    }
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
    fn target_label_brackets_ipv6() {
        assert_eq!(Host::parse("::1").unwrap().with_port(80), "[::1]:80");
        assert_eq!(
            Host::parse("10.0.0.1").unwrap().with_port(80),
            "10.0.0.1:80"
        );
        assert_eq!(Host::parse("redis").unwrap().with_port(6379), "redis:6379");
    }

    #[test]
    fn classifies_errno_values_the_kernel_returns() {
        let reason = |errno| classify(&io::Error::from_raw_os_error(errno));
        assert_eq!(reason(111), Reason::ConnectionRefused); // ECONNREFUSED
        assert_eq!(reason(104), Reason::ConnectionReset); // ECONNRESET
        assert_eq!(reason(32), Reason::ConnectionReset); // EPIPE
        assert_eq!(reason(107), Reason::ConnectionReset); // ENOTCONN
        assert_eq!(reason(110), Reason::ConnectionTimeout); // ETIMEDOUT
        assert_eq!(reason(101), Reason::NetworkUnreachable); // ENETUNREACH
        assert_eq!(reason(113), Reason::HostUnreachable); // EHOSTUNREACH
        assert_eq!(reason(13), Reason::PermissionDenied); // EACCES
        assert_eq!(reason(1), Reason::PermissionDenied); // EPERM
        assert_eq!(reason(24), Reason::IoError); // EMFILE
    }

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
