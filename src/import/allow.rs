//! The converted modules' `allow` lists. `/probe` runs a module only within its list, so a
//! module that a Prometheus `/probe` job used gets one admitting exactly that job's static
//! targets: their names in `hosts`, their IP literals in `networks` (one address each), and
//! the ports they use in `ports` when every one of them has a port. A module no job used gets
//! none, and a comment showing the shape of one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::blackbox::Prober;
use super::emit::{Map, Out};
use crate::net::{self, Host};
use crate::probe::http::Url;

/// The comment above a module without a list: why it has none, and the shape of one.
pub fn missing_comment(why: &str) -> String {
    format!(
        "/probe runs a module only within its allow list, and this one has none:\n\
         {why}. To call it there, give it one:\n\
         allow: {{networks: [...], hosts: [...], ports: [...]}}"
    )
}

/// Whom the static targets of each module reach, gathered target by target.
#[derive(Debug, Default)]
pub struct Allows(BTreeMap<String, Reach>);

#[derive(Debug, Default)]
struct Reach {
    hosts: BTreeSet<String>,
    networks: BTreeSet<IpAddr>,
    ports: BTreeSet<u16>,
    /// A target without a port (icmp): the list then names no ports.
    portless: bool,
}

impl Allows {
    pub fn new() -> Self {
        Allows::default()
    }

    /// Admits `address`, a static target of `module` as Prometheus handed it to blackbox. A
    /// target vantage cannot read admits no one (the converted config refuses it anyway).
    pub fn add(&mut self, module: &str, prober: Prober, address: &str) {
        let Some((host, port)) = reach(prober, address.trim()) else {
            return;
        };
        let entry = self.0.entry(module.to_string()).or_default();
        match host {
            Host::Ip(ip) => {
                let ip = match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                    v4 => v4,
                };
                entry.networks.insert(ip);
            }
            Host::Name(name) => {
                entry
                    .hosts
                    .insert(name.trim_end_matches('.').to_ascii_lowercase());
            }
        }
        match port {
            Some(port) => {
                entry.ports.insert(port);
            }
            None => entry.portless = true,
        }
    }

    /// `module`'s `allow` table, or `None` when no target was added for it.
    pub fn table(&self, module: &str) -> Option<Map> {
        let reach = self.0.get(module)?;
        let mut table = Map::new();
        if !reach.networks.is_empty() {
            let networks = reach.networks.iter().map(|ip| {
                let prefix = if ip.is_ipv4() { 32 } else { 128 };
                Out::Str(format!("{ip}/{prefix}"))
            });
            table.set("networks", Out::Seq(networks.collect()));
        }
        if !reach.hosts.is_empty() {
            let hosts = reach.hosts.iter().map(|h| Out::Str(h.clone()));
            table.set("hosts", Out::Seq(hosts.collect()));
        }
        if !reach.portless && !reach.ports.is_empty() {
            let ports = reach.ports.iter().map(|p| Out::Int(i64::from(*p)));
            table.set("ports", Out::Seq(ports.collect()));
        }
        Some(table)
    }
}

/// The host and port `/probe` checks for `address` when a module of `prober` is called with
/// it as its target: an http URL's (80 or 443 when it has none), tcp's `host:port`, icmp's
/// host, a dns server's address and port (53 when it has none).
fn reach(prober: Prober, address: &str) -> Option<(Host, Option<u16>)> {
    match prober {
        Prober::Http => {
            let url = if address.contains("://") {
                Url::parse(address)
            } else {
                Url::parse(&format!("http://{address}"))
            };
            url.ok().map(|u| (u.host, Some(u.port)))
        }
        Prober::Tcp => net::parse_host_port(address)
            .ok()
            .map(|(host, port)| (host, Some(port))),
        Prober::Icmp => Host::parse(address).ok().map(|host| (host, None)),
        Prober::Dns => net::parse_dns_server(address)
            .ok()
            .map(|server| (Host::Ip(server.ip()), Some(server.port()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::emit::document;

    fn written(prober: Prober, targets: &[&str]) -> String {
        let mut allows = Allows::new();
        for t in targets {
            allows.add("m", prober, t);
        }
        let mut top = Map::new();
        top.set("allow", Out::Map(allows.table("m").unwrap()));
        document(&top)
    }

    #[test]
    fn names_go_to_hosts_and_ip_literals_to_networks_with_the_ports_used() {
        assert_eq!(
            written(
                Prober::Http,
                &[
                    "https://WWW.Example.com./x",
                    "example.com",
                    "http://10.0.0.1:8080/health",
                    "http://[2001:db8::1]/",
                    "http://[::ffff:192.0.2.7]:81/",
                ],
            ),
            "allow:\n  networks: [\"10.0.0.1/32\", \"192.0.2.7/32\", \"2001:db8::1/128\"]\n  \
             hosts: [\"example.com\", \"www.example.com\"]\n  ports: [80, 81, 443, 8080]\n"
        );
        assert_eq!(
            written(Prober::Tcp, &["db:5432", "[::1]:22", "db:5432"]),
            "allow:\n  networks: [\"::1/128\"]\n  hosts: [\"db\"]\n  ports: [22, 5432]\n"
        );
    }

    #[test]
    fn dns_servers_are_networks_with_their_ports_and_icmp_has_no_ports() {
        assert_eq!(
            written(Prober::Dns, &["10.0.0.53", "[2001:db8::53]:5353"]),
            "allow:\n  networks: [\"10.0.0.53/32\", \"2001:db8::53/128\"]\n  ports: [53, 5353]\n"
        );
        assert_eq!(
            written(Prober::Icmp, &["10.0.0.1", "Router.lan"]),
            "allow:\n  networks: [\"10.0.0.1/32\"]\n  hosts: [\"router.lan\"]\n"
        );
    }

    #[test]
    fn a_module_without_readable_targets_gets_no_list() {
        let mut allows = Allows::new();
        allows.add("m", Prober::Tcp, "nohostport");
        allows.add("m", Prober::Dns, "ns1.example.com");
        assert_eq!(allows.table("m"), None);
        assert_eq!(allows.table("other"), None);
    }

    #[test]
    fn the_written_list_is_one_vantage_accepts_and_admits_the_targets() {
        use crate::build::{Context, S};
        use crate::config::allow::{Allow, RawAllow, Verdict};
        let text = written(Prober::Http, &["https://a.example/", "10.0.0.1:8080"]);
        let raw: BTreeMap<String, S<RawAllow>> = serde_saphyr::from_str(&text).unwrap();
        let mut cx = Context::new("test.yml");
        let allow = Allow::build(&mut cx, &raw["allow"], "allow").unwrap();
        let check = |h: &str, p| allow.check(&Host::parse(h).unwrap(), Some(p));
        assert_eq!(check("a.example", 443), Verdict::Allowed);
        assert_eq!(check("10.0.0.1", 8080), Verdict::Allowed);
        assert!(matches!(check("10.0.0.2", 8080), Verdict::Refused(_)));
        assert!(matches!(check("a.example", 22), Verdict::Refused(_)));
    }
}
