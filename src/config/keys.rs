//! The keys of a target that are not its type's own: `dns` on the types that resolve a host
//! (the resolver, not a question), and the keys that belong to other types, each an error where
//! it is written.

use super::builder::Builder;
use super::raw::RawTarget;
use crate::net::{self, dns};
use crate::probe::{Key, Kind};

impl Builder<'_> {
    /// `dns.server` (and `dns.transport`) on a tcp or http target: the resolver of its host.
    /// `Some(None)` without one, `None` after reporting errors.
    pub(super) fn resolver(
        &mut self,
        t: &RawTarget,
        kind: Kind,
        path: &str,
    ) -> Option<Option<dns::Server>> {
        let Some(raw) = &t.dns else {
            return Some(None);
        };
        let dns = &raw.value;
        let mut ok = true;
        for (key, written) in [
            (
                "record_type",
                dns.record_type.as_ref().map(|x| x.referenced),
            ),
            (
                "expect_addresses",
                dns.expect_addresses.as_ref().map(|x| x.referenced),
            ),
            (
                "expect_regex",
                dns.expect_regex.as_ref().map(|x| x.referenced),
            ),
            (
                "valid_rcodes",
                dns.valid_rcodes.as_ref().map(|x| x.referenced),
            ),
        ] {
            if let Some(at) = written {
                self.cx.error(
                    &at,
                    format!("{path}.dns.{key}"),
                    format!(
                        "`{key}` applies to dns targets; on {} targets `dns` picks the resolver (`server`, `transport`)",
                        kind.as_str()
                    ),
                );
                ok = false;
            }
        }
        let Some(server) = &dns.server else {
            self.cx.error(
                &raw.referenced,
                format!("{path}.dns.server"),
                "give the resolver's address, such as 10.0.0.53, or leave `dns` out for the system's",
            );
            return None;
        };
        let addr = match net::parse_dns_server(&server.value) {
            Ok(addr) => addr,
            Err(e) => {
                self.cx
                    .error(&server.referenced, format!("{path}.dns.server"), e);
                return None;
            }
        };
        ok.then_some(Some(dns::Server {
            addr,
            transport: dns
                .transport
                .as_ref()
                .map_or(dns::Transport::Udp, |t| t.value),
        }))
    }

    /// Keys that belong to other target types, each an error where it is written. Returns
    /// whether there were none. Which type takes which key is the registry's
    /// ([`Kind::accepts`]).
    pub(super) fn foreign_keys(&mut self, t: &RawTarget, kind: Kind, path: &str) -> bool {
        // Without `..`: a key added to targets does not compile until it is placed here.
        let RawTarget {
            name: _,
            kind: _,
            module: _,
            host,
            port,
            url,
            interval: _,
            timeout: _,
            retries: _,
            retry_delay: _,
            interval_on_failure: _,
            ip_version: _,
            addresses,
            labels: _,
            locations: _,
            tcp,
            tls,
            http,
            icmp,
            dns: _,
            assertions: _,
        } = t;
        let keys = [
            (
                "host",
                host.as_ref().map(|x| x.referenced),
                Key::Host,
                "http targets take a `url`, not `host`",
            ),
            (
                "port",
                port.as_ref().map(|x| x.referenced),
                Key::Port,
                if kind == Kind::Http {
                    "http targets take the port in the `url`"
                } else {
                    "`port` applies to tcp targets only"
                },
            ),
            (
                "tls",
                tls.as_ref().map(|x| x.referenced),
                Key::Tls,
                "`tls` applies to tcp and http targets only",
            ),
            (
                "url",
                url.as_ref().map(|x| x.referenced),
                Key::Url,
                "`url` is for http targets; other targets use `host` (and `port`)",
            ),
            (
                "tcp",
                tcp.as_ref().map(|x| x.referenced),
                Key::Tcp,
                "the `tcp` table applies to tcp targets only",
            ),
            (
                "http",
                http.as_ref().map(|x| x.referenced),
                Key::Http,
                "the `http` table applies to http targets only",
            ),
            (
                "icmp",
                icmp.as_ref().map(|x| x.referenced),
                Key::Icmp,
                "the `icmp` table applies to icmp targets only",
            ),
            (
                "addresses",
                addresses.as_ref().map(|x| x.referenced),
                Key::Addresses,
                "`addresses` applies to tcp, http and icmp targets: a dns target asks one server",
            ),
        ];
        let mut ok = true;
        for (key, written, which, message) in keys {
            if let Some(at) = written
                && !kind.accepts(which)
            {
                self.cx.error(&at, format!("{path}.{key}"), message);
                ok = false;
            }
        }
        ok
    }
}
