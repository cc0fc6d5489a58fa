//! A small DNS client: one question to one server, over UDP (falling back to TCP when the answer
//! is truncated) or TCP, under the run's deadline, with every read bounded. The dns probe asks
//! its question with it, and targets with `dns.server` resolve their host with it.
//!
//! Sockets are opened per question: no state is shared between runs, so one slow or lying
//! server cannot disturb another target's answers.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};

use super::addr::IpVersion;
use super::close::close;
use super::socket::{connect, failure};
use crate::outcome::{Failure, Reason, Trace};

/// CNAMEs followed within one answer; a longer chain (or a loop) stops there.
const MAX_CNAME_HOPS: usize = 8;

/// The largest UDP answer read; a bigger datagram is cut, fails to parse, and is reported.
const UDP_LIMIT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

/// Where questions go: a server and how to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    pub addr: SocketAddr,
    pub transport: Transport,
}

/// A server's answer, and how long the exchange took.
#[derive(Debug, Clone)]
pub struct Reply {
    pub message: Message,
    pub took: Duration,
    /// The TCP connect within `took`, for an answer that came over TCP; UDP connects nothing.
    pub connected: Option<Duration>,
    /// The transport that answered (a truncated UDP answer is asked again over TCP).
    pub transport: Transport,
}

impl Reply {
    pub fn rcode(&self) -> ResponseCode {
        self.message.metadata.response_code
    }

    /// The addresses of the question's name: the A and AAAA records of the name that its
    /// CNAME chain within the answer ends at. Records about other names do not count.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let Some(question) = self.message.queries.first() else {
            return Vec::new();
        };
        let mut name = question.name().clone();
        for _ in 0..MAX_CNAME_HOPS {
            let next = self.message.answers.iter().find_map(|r| match &r.data {
                RData::CNAME(target) if r.name == name => Some(target.0.clone()),
                _ => None,
            });
            match next {
                Some(target) => name = target,
                None => break,
            }
        }
        self.message
            .answers
            .iter()
            .filter(|r| r.name == name)
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect()
    }

    /// Records in the additional section as the wire counts them (ARCOUNT): the EDNS OPT
    /// record and a TSIG signature included, which the parser keeps apart.
    pub fn additional_count(&self) -> usize {
        let m = &self.message;
        m.additionals.len() + usize::from(m.edns.is_some()) + usize::from(m.signature.is_some())
    }

    /// The serial of the first SOA record in the answer section: what an SOA question asks.
    pub fn soa_serial(&self) -> Option<u32> {
        self.message.answers.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
    }

    /// Every answer record as zone-file text: `name TTL IN TYPE data`.
    pub fn answer_lines(&self) -> Vec<String> {
        self.message
            .answers
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {} {}",
                    r.name,
                    r.ttl,
                    r.dns_class,
                    r.record_type(),
                    r.data
                )
            })
            .collect()
    }
}

/// The mnemonic of a response code as dig prints it: NOERROR, NXDOMAIN, SERVFAIL, ...
pub fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

/// Asks `server` for `name`'s records of `record_type`, recursion desired.
pub async fn ask(
    server: Server,
    name: &Name,
    record_type: RecordType,
    deadline: Instant,
    trace: &mut Trace,
) -> Result<Reply, Failure> {
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(name.clone(), record_type));
    let bytes = query
        .to_vec()
        .map_err(|e| Failure::new(Reason::DnsError, format!("encoding the question: {e}")))?;
    let started = Instant::now();
    let expect = Expected::new(&query);
    let (message, transport, took, connected) = match server.transport {
        Transport::Tcp => {
            let (message, took, connected) =
                tcp(server.addr, &bytes, &expect, started, deadline, trace).await?;
            (message, Transport::Tcp, took, Some(connected))
        }
        Transport::Udp => match udp(server.addr, &bytes, &expect, deadline).await? {
            Some(message) => (message, Transport::Udp, started.elapsed(), None),
            None => {
                // The whole answer does not fit a datagram: ask again over TCP, as resolvers do.
                let (message, took, connected) =
                    tcp(server.addr, &bytes, &expect, started, deadline, trace).await?;
                (message, Transport::Tcp, took, Some(connected))
            }
        },
    };
    Ok(Reply {
        message,
        took,
        connected,
        transport,
    })
}

/// What an answer must match: our message ID, and our question echoed back.
pub(crate) struct Expected<'q> {
    id: u16,
    query: &'q Message,
}

impl<'q> Expected<'q> {
    pub(crate) fn new(query: &'q Message) -> Self {
        Expected {
            id: query.metadata.id,
            query,
        }
    }

    /// Parses `bytes` as the answer to our question.
    pub(crate) fn answer(&self, server: SocketAddr, bytes: &[u8]) -> Result<Message, Failure> {
        let message = Message::from_vec(bytes).map_err(|e| {
            Failure::new(
                Reason::DnsError,
                format!("{server} answered with a malformed message: {e}"),
            )
        })?;
        if message.metadata.message_type != MessageType::Response
            || message.queries != self.query.queries
        {
            return Err(Failure::new(
                Reason::DnsError,
                format!("{server} answered another question"),
            ));
        }
        Ok(message)
    }

    /// Whether a message is a response to us (its ID, the QR bit), read from the raw header
    /// so that a truncated answer is recognised even when its records are cut off.
    pub(crate) fn ours(&self, bytes: &[u8]) -> bool {
        bytes.len() >= 12
            && u16::from_be_bytes([bytes[0], bytes[1]]) == self.id
            && bytes[2] & 0x80 != 0
    }
}

/// One datagram question. `None` when the server says the answer is truncated (TC).
async fn udp(
    server: SocketAddr,
    query: &[u8],
    expect: &Expected<'_>,
    deadline: Instant,
) -> Result<Option<Message>, Failure> {
    let local: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| failure(&e, "opening a UDP socket"))?;
    // Connected: the kernel drops datagrams from anyone else, and reports a closed port.
    socket
        .connect(server)
        .await
        .map_err(|e| unanswered(server, &e))?;
    socket
        .send(query)
        .await
        .map_err(|e| unanswered(server, &e))?;
    let mut buf = vec![0u8; UDP_LIMIT];
    loop {
        let n = match timeout_at(deadline, socket.recv(&mut buf)).await {
            Err(_) => return Err(silent(server)),
            Ok(Err(e)) => return Err(unanswered(server, &e)),
            Ok(Ok(n)) => n,
        };
        let datagram = &buf[..n];
        // Anything that is not a response to our ID (spoofed, garbled, late) is ignored, and
        // the wait goes on until the deadline; each wait is one blocking read, so no spin.
        if !expect.ours(datagram) {
            continue;
        }
        if datagram[2] & 0x02 != 0 {
            return Ok(None);
        }
        return expect.answer(server, datagram).map(Some);
    }
}

/// One question over TCP; the time is taken when the answer is read, before the close. Also
/// returns how long the connect took.
async fn tcp(
    server: SocketAddr,
    query: &[u8],
    expect: &Expected<'_>,
    started: Instant,
    deadline: Instant,
    trace: &mut Trace,
) -> Result<(Message, Duration, Duration), Failure> {
    let (mut stream, connected) = connect(server, deadline).await.map_err(|f| {
        Failure::new(
            Reason::DnsError,
            format!("no DNS server over TCP: {}", f.detail),
        )
    })?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&u16::try_from(query.len()).unwrap_or(u16::MAX).to_be_bytes());
    framed.extend_from_slice(query);
    let exchange = async {
        stream.write_all(&framed).await?;
        let length = usize::from(stream.read_u16().await?);
        // At most 64 KiB, by the framing itself.
        let mut answer = vec![0u8; length];
        stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = timeout_at(deadline, exchange).await;
    let took = started.elapsed();
    let _ = close(stream, deadline, trace).await;
    let answer = match answer {
        Err(_) => return Err(silent(server)),
        Ok(Err(e)) => return Err(unanswered(server, &e)),
        Ok(Ok(answer)) => answer,
    };
    if !expect.ours(&answer) {
        return Err(Failure::new(
            Reason::DnsError,
            format!("{server} answered with another message ID, or not with a response"),
        ));
    }
    Ok((expect.answer(server, &answer)?, took, connected))
}

fn silent(server: SocketAddr) -> Failure {
    Failure::new(
        Reason::DnsError,
        format!("no answer from the DNS server {server} before the deadline"),
    )
}

fn unanswered(server: SocketAddr, err: &std::io::Error) -> Failure {
    Failure::new(
        Reason::DnsError,
        format!("no answer from the DNS server {server}: {err}"),
    )
}

/// The first `nameserver` of `/etc/resolv.conf`: the system's resolver, for dns probes that
/// name no server. Read at every call, so an edited resolv.conf applies without a restart.
pub fn system_server(ip_version: IpVersion) -> Result<SocketAddr, String> {
    use std::io::Read;
    // Its first 64 KiB, far more than a resolver reads (glibc takes three nameservers): a
    // runaway file must not be read whole at every run.
    let mut bytes = Vec::new();
    std::fs::File::open("/etc/resolv.conf")
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read /etc/resolv.conf: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    first_nameserver(&text, ip_version).ok_or_else(|| match ip_version {
        IpVersion::Auto => "/etc/resolv.conf lists no nameserver".to_string(),
        v => format!("/etc/resolv.conf lists no IPv{v} nameserver"),
    })
}

fn first_nameserver(text: &str, ip_version: IpVersion) -> Option<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next() != Some("nameserver") {
                return None;
            }
            // A scoped link-local address (`fe80::1%eth0`) needs an interface index that a plain
            // address cannot carry: skip it for the next nameserver.
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .find(|server| ip_version.accepts(server.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_nameserver_line_wins() {
        let text = "# comment\nsearch example.com\nnameserver 10.0.0.53\nnameserver 10.0.0.54\n";
        assert_eq!(
            first_nameserver(text, IpVersion::Auto),
            Some("10.0.0.53:53".parse().unwrap())
        );
        assert_eq!(first_nameserver(text, IpVersion::V6), None);
        assert_eq!(
            first_nameserver("nameserver fe80::1%eth0\nnameserver ::1\n", IpVersion::Auto),
            Some("[::1]:53".parse().unwrap())
        );
        assert_eq!(first_nameserver("search x\n", IpVersion::Auto), None);
    }

    #[test]
    fn addresses_follow_the_cname_chain_and_ignore_other_names() {
        use hickory_proto::rr::Record;
        use hickory_proto::rr::rdata::{A, CNAME};
        let name = |n: &str| Name::from_ascii(n).unwrap();
        let mut message = Message::query();
        message.add_query(Query::query(name("www.example."), RecordType::A));
        message.add_answer(Record::from_rdata(
            name("www.example."),
            60,
            RData::CNAME(CNAME(name("edge.example."))),
        ));
        message.add_answer(Record::from_rdata(
            name("unrelated.example."),
            60,
            RData::A(A::new(192, 0, 2, 9)),
        ));
        message.add_answer(Record::from_rdata(
            name("EDGE.example."),
            60,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        let reply = Reply {
            message,
            took: Duration::ZERO,
            connected: None,
            transport: Transport::Udp,
        };
        assert_eq!(reply.addresses(), vec![IpAddr::from([192, 0, 2, 1])]);
    }

    #[test]
    fn section_counts_include_opt_and_the_soa_serial_is_read_from_the_answer() {
        use hickory_proto::op::Edns;
        use hickory_proto::rr::Record;
        use hickory_proto::rr::rdata::{A, NS, SOA};
        let name = |n: &str| Name::from_ascii(n).unwrap();
        let soa = |serial| {
            RData::SOA(SOA::new(
                name("ns.example."),
                name("admin.example."),
                serial,
                3600,
                600,
                86400,
                60,
            ))
        };
        let mut message = Message::query();
        message.add_query(Query::query(name("example."), RecordType::SOA));
        message.add_answer(Record::from_rdata(name("example."), 60, soa(2026120701)));
        message.add_authority(Record::from_rdata(
            name("example."),
            60,
            RData::NS(NS(name("ns.example."))),
        ));
        message.add_additional(Record::from_rdata(
            name("ns.example."),
            60,
            RData::A(A::new(192, 0, 2, 53)),
        ));
        message.edns = Some(Edns::new());
        let reply = Reply {
            message,
            took: Duration::ZERO,
            connected: None,
            transport: Transport::Udp,
        };
        assert_eq!(reply.message.authorities.len(), 1);
        assert_eq!(reply.additional_count(), 2, "the A record and the OPT");
        assert_eq!(reply.soa_serial(), Some(2026120701));

        let mut negative = Message::query();
        negative.add_authority(Record::from_rdata(name("example."), 60, soa(7)));
        let reply = Reply {
            message: negative,
            ..reply
        };
        assert_eq!(
            reply.soa_serial(),
            None,
            "an SOA in authority is not an answer"
        );
        assert_eq!(reply.additional_count(), 0);
    }

    #[test]
    fn rcodes_are_named_as_dig_names_them() {
        assert_eq!(rcode_name(ResponseCode::NoError), "NOERROR");
        assert_eq!(rcode_name(ResponseCode::NXDomain), "NXDOMAIN");
        assert_eq!(rcode_name(ResponseCode::ServFail), "SERVFAIL");
        assert_eq!(rcode_name(<ResponseCode as From<u16>>::from(12)), "RCODE12");
    }
}
