//! The dns target's config: its `dns` table as written (which on other types picks their
//! resolver), and the builder that turns it, with the target's shared keys, into a
//! [`DnsProbe`].

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde::{Deserialize, Serialize};

use super::{DnsProbe, parse_rcode, question_name};
use crate::build::{Common, Context, S, regex_message};
use crate::net;
use crate::net::dns::Transport;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RawRecordType {
    A,
    Aaaa,
    Cname,
    Mx,
    Txt,
    Ns,
    Soa,
    Ptr,
    Srv,
    Caa,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// `host:port` of the server to ask; on tcp and http targets, the resolver to use.
    pub server: Option<S<String>>,
    pub record_type: Option<S<RawRecordType>>,
    pub transport: Option<S<Transport>>,
    pub expect_addresses: Option<S<Vec<S<IpAddr>>>>,
    pub expect_regex: Option<S<String>>,
    pub valid_rcodes: Option<S<Vec<String>>>,
}

impl From<RawRecordType> for hickory_proto::rr::RecordType {
    fn from(r: RawRecordType) -> Self {
        use hickory_proto::rr::RecordType as T;
        match r {
            RawRecordType::A => T::A,
            RawRecordType::Aaaa => T::AAAA,
            RawRecordType::Cname => T::CNAME,
            RawRecordType::Mx => T::MX,
            RawRecordType::Txt => T::TXT,
            RawRecordType::Ns => T::NS,
            RawRecordType::Soa => T::SOA,
            RawRecordType::Ptr => T::PTR,
            RawRecordType::Srv => T::SRV,
            RawRecordType::Caa => T::CAA,
        }
    }
}

/// A dns target from its shared keys and its `dns` table.
pub fn build(cx: &mut Context, common: &Common, dns: Option<&S<RawDns>>) -> Option<DnsProbe> {
    let path = common.path;
    let mut ok = true;
    let dpath = format!("{path}.dns");
    let host = cx.host(common, "dns targets need `host`: the name to ask about")?;
    // Present, or `host()` would have reported it.
    let written = common.host?;
    let empty = RawDns::default();
    let raw = dns.map_or(&empty, |d| &d.value);
    let record_type = raw
        .record_type
        .as_ref()
        .map_or(RecordType::A, |r| r.value.into());
    let name = match question_name(&host, record_type) {
        Ok(name) => name,
        Err(e) => {
            cx.error(&written.referenced, format!("{path}.host"), e);
            return None;
        }
    };
    let server = match &raw.server {
        None => None,
        Some(s) => match net::parse_dns_server(&s.value) {
            Ok(addr) if !common.ip_version.accepts(addr.ip()) => {
                cx.error(
                    &s.referenced,
                    format!("{dpath}.server"),
                    format!(
                        "ip_version is {}, but the server {addr} is not an IPv{} address",
                        common.ip_version, common.ip_version
                    ),
                );
                ok = false;
                None
            }
            Ok(addr) => Some(addr),
            Err(e) => {
                cx.error(&s.referenced, format!("{dpath}.server"), e);
                ok = false;
                None
            }
        },
    };
    let expect_regex = match &raw.expect_regex {
        None => None,
        Some(r) => match regex::Regex::new(&r.value) {
            Ok(regex) => Some(regex),
            Err(e) => {
                cx.error(
                    &r.referenced,
                    format!("{dpath}.expect_regex"),
                    format!("invalid regex: {}", regex_message(&e)),
                );
                ok = false;
                None
            }
        },
    };
    let valid_rcodes = match &raw.valid_rcodes {
        None => vec![ResponseCode::NoError],
        Some(list) => {
            let parsed: Result<Vec<ResponseCode>, String> =
                list.value.iter().map(|c| parse_rcode(c)).collect();
            match parsed {
                Ok(codes) if !codes.is_empty() => codes,
                Ok(_) => {
                    cx.error(
                        &list.referenced,
                        format!("{dpath}.valid_rcodes"),
                        "list at least one response code, or leave it out for NOERROR",
                    );
                    ok = false;
                    Vec::new()
                }
                Err(e) => {
                    cx.error(&list.referenced, format!("{dpath}.valid_rcodes"), e);
                    ok = false;
                    Vec::new()
                }
            }
        }
    };
    let expect_addresses = raw
        .expect_addresses
        .as_ref()
        .map(|a| a.value.iter().map(|ip| ip.value).collect());
    if let Some(a) = &raw.expect_addresses {
        ok &= expected_family(cx, a, record_type, &dpath);
    }
    ok.then(|| DnsProbe {
        written: written.value.clone(),
        name,
        record_type,
        server,
        ip_version: common.ip_version,
        transport: raw.transport.as_ref().map_or(Transport::Udp, |t| t.value),
        expect_addresses,
        expect_regex,
        valid_rcodes,
    })
}

/// Whether every expected address can be in the records asked for: none can be in records
/// other than A and AAAA, and an A record never holds an IPv6 address (nor AAAA an IPv4 one),
/// so such an expectation could only ever fail.
fn expected_family(
    cx: &mut Context,
    addresses: &S<Vec<S<IpAddr>>>,
    record_type: RecordType,
    dpath: &str,
) -> bool {
    let family = match record_type {
        RecordType::A => net::IpVersion::V4,
        RecordType::AAAA => net::IpVersion::V6,
        _ => {
            cx.error(
                &addresses.referenced,
                format!("{dpath}.expect_addresses"),
                format!(
                    "{record_type} records hold no addresses: use expect_regex, or record_type A or AAAA"
                ),
            );
            return false;
        }
    };
    let mut ok = true;
    for (i, ip) in addresses.value.iter().enumerate() {
        if !family.accepts(ip.value) {
            let (version, holder) = if ip.value.is_ipv4() {
                (4, "A")
            } else {
                (6, "AAAA")
            };
            cx.error(
                &ip.referenced,
                format!("{dpath}.expect_addresses[{i}]"),
                format!(
                    "{} is an IPv{version} address, which {record_type} records never hold: \
                     ask for {holder} records in a target of its own",
                    ip.value
                ),
            );
            ok = false;
        }
    }
    ok
}
