//! The dns probe: one question to one server, and the answer judged: its response code, and
//! optionally the addresses it holds or a pattern over its records, which catches stale
//! records and split-horizon views that answer differently than they should.

pub mod config;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod metrics;
pub mod report;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use regex::Regex;
use tokio::time::Instant;

use crate::net::dns::{self, Reply, Server, Transport};
use crate::net::{Host, IpVersion};
use crate::outcome::{Failure, Outcome, Reason, ReasonSet, Trace};

#[derive(Debug, Clone)]
pub struct DnsProbe {
    /// The name asked about, as configured: the `target` label.
    pub written: String,
    /// The question's name: the host as a fully qualified name, or for an IP address with
    /// `record_type: PTR`, its reverse name.
    pub name: Name,
    pub record_type: RecordType,
    /// `None`: the system's resolver, the first nameserver of `/etc/resolv.conf` at each run.
    pub server: Option<SocketAddr>,
    /// Which of the system's nameservers to ask (with `server`, checked when the config loads).
    pub ip_version: IpVersion,
    pub transport: Transport,
    /// The answer's addresses must be exactly these (in any order).
    pub expect_addresses: Option<BTreeSet<IpAddr>>,
    /// Some answer record, as `name TTL class TYPE data`, must match.
    pub expect_regex: Option<Regex>,
    pub valid_rcodes: Vec<ResponseCode>,
}

/// What the answer said.
#[derive(Debug, Clone)]
pub struct DnsFacts {
    pub server: SocketAddr,
    pub transport: Transport,
    pub rcode: ResponseCode,
    /// The answer section as text, one record per line.
    pub answers: Vec<String>,
    /// Records in the authority and additional sections (the latter as the wire counts them).
    pub authority_records: usize,
    pub additional_records: usize,
    /// The zone's serial, when the answer holds an SOA record.
    pub serial: Option<u32>,
    /// The exchange, from the question sent (or its TCP connect begun) to the answer read.
    pub took: Duration,
    /// The TCP connect within `took`; `None` when the answer came over UDP alone.
    pub connected: Option<Duration>,
}

/// Every reason a dns run can end with: the client reports an unreachable or silent server as
/// `dns_error`, and only opening its socket can fail otherwise.
pub const REASONS: ReasonSet = ReasonSet::of(&[
    Reason::DnsError,
    Reason::DnsUnexpectedAnswer,
    Reason::Timeout,
    Reason::PermissionDenied,
    Reason::IoError,
]);

impl DnsProbe {
    /// `check-config`'s words for the question and where it goes.
    pub fn summary(&self) -> String {
        let server = self
            .server
            .map_or("the system resolver".to_string(), |s| s.to_string());
        format!(", {} over {} to {server}", self.record_type, self.transport)
    }

    /// The same question about another name.
    pub fn retarget(&self, address: &str) -> Result<DnsProbe, String> {
        Ok(DnsProbe {
            written: address.trim().to_string(),
            name: question_name(&Host::parse(address.trim())?, self.record_type)?,
            ..self.clone()
        })
    }

    /// The facts are the answer, when one came.
    pub async fn attempt(&self, deadline: Instant) -> Outcome<Option<DnsFacts>> {
        let mut trace = Trace::start();
        let mut facts = None;
        let result = self.ask(deadline, &mut trace, &mut facts).await;
        Outcome::with_facts(result, trace, facts)
    }

    async fn ask(
        &self,
        deadline: Instant,
        trace: &mut Trace,
        seen: &mut Option<DnsFacts>,
    ) -> Result<(), Failure> {
        let addr = match self.server {
            Some(addr) => addr,
            None => dns::system_server(self.ip_version)
                .map_err(|e| Failure::new(Reason::DnsError, e))?,
        };
        trace.address = Some(addr);
        let server = Server {
            addr,
            transport: self.transport,
        };
        let reply = dns::ask(server, &self.name, self.record_type, deadline, trace).await?;
        trace.phases.dns = reply.took.into();
        // The exchange includes it; over TCP the connect is also the connect phase.
        trace.phases.connect = reply.connected.into();
        trace.answered = Some(trace.elapsed());
        let answers = reply.answer_lines();
        let verdict = self.judge(&reply, &answers);
        *seen = Some(DnsFacts {
            server: addr,
            transport: reply.transport,
            rcode: reply.rcode(),
            answers,
            authority_records: reply.message.authorities.len(),
            additional_records: reply.additional_count(),
            serial: reply.soa_serial(),
            took: reply.took,
            connected: reply.connected,
        });
        verdict
    }

    /// `answers` is the answer section as text (`Reply::answer_lines`).
    fn judge(&self, reply: &Reply, answers: &[String]) -> Result<(), Failure> {
        let rcode = reply.rcode();
        if !self.valid_rcodes.contains(&rcode) {
            let valid: Vec<String> = self
                .valid_rcodes
                .iter()
                .map(|c| dns::rcode_name(*c))
                .collect();
            return Err(Failure::new(
                Reason::DnsError,
                format!(
                    "{} answered {}, expected {}",
                    self.written,
                    dns::rcode_name(rcode),
                    valid.join(" or ")
                ),
            ));
        }
        if rcode != ResponseCode::NoError {
            // An expected NXDOMAIN (a name that must not exist) has nothing more to judge.
            return Ok(());
        }
        if reply.message.answers.is_empty() {
            return Err(Failure::new(
                Reason::DnsUnexpectedAnswer,
                format!(
                    "NOERROR without answer records: {} has no {} records",
                    self.written, self.record_type
                ),
            ));
        }
        if let Some(expected) = &self.expect_addresses {
            let got: BTreeSet<IpAddr> = reply.addresses().into_iter().collect();
            if &got != expected {
                let list = |set: &BTreeSet<IpAddr>| {
                    set.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(Failure::new(
                    Reason::DnsUnexpectedAnswer,
                    format!("addresses [{}], expected [{}]", list(&got), list(expected)),
                ));
            }
        }
        if let Some(regex) = &self.expect_regex
            && !answers.iter().any(|l| regex.is_match(l))
        {
            return Err(Failure::new(
                Reason::DnsUnexpectedAnswer,
                format!("no answer record matches /{regex}/: {}", answers.join("; ")),
            ));
        }
        Ok(())
    }
}

/// A response code by its dig mnemonic (`NOERROR`, `NXDOMAIN`, ...).
pub fn parse_rcode(text: &str) -> Result<ResponseCode, String> {
    (0u16..=23)
        .map(<ResponseCode as From<u16>>::from)
        .find(|code| dns::rcode_name(*code) == text)
        .ok_or_else(|| {
            format!(
                "{text:?} is not a response code such as NOERROR, NXDOMAIN, SERVFAIL or REFUSED"
            )
        })
}

/// The name a dns target asks about: its host as a fully qualified name, or for an address
/// asked for PTR records, the address's reverse name (`4.3.2.1.in-addr.arpa.`).
pub fn question_name(host: &Host, record_type: RecordType) -> Result<Name, String> {
    match host {
        Host::Ip(ip) if record_type == RecordType::PTR => Ok(Name::from(*ip)),
        Host::Ip(ip) => Err(format!(
            "{ip} is an address: ask about a name, or use record_type: PTR for its reverse name"
        )),
        Host::Name(name) => {
            let mut fqdn = Name::from_ascii(name).map_err(|e| format!("{name:?}: {e}"))?;
            fqdn.set_fqdn(true);
            Ok(fqdn)
        }
    }
}
