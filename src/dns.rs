//! A small DNS client: one question to one server, over UDP (falling back to TCP when the answer
//! is truncated) or TCP, under the run's deadline, with every read bounded. The dns probe asks
//! its question with it, and targets with `dns.server` resolve their host with it.
//!
//! Sockets are opened per question: no state is shared between runs, so one slow or lying
//! server cannot disturb another target's answers.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};

use crate::probe::{Failure, Reason, Trace};

/// The largest UDP answer read; a bigger datagram is cut, fails to parse, and is reported.
const UDP_LIMIT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
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
    /// The transport that answered (a truncated UDP answer is asked again over TCP).
    pub transport: Transport,
}

impl Reply {
    pub fn rcode(&self) -> ResponseCode {
        self.message.metadata.response_code
    }

    /// The addresses among the answers (A and AAAA records, whatever their owner name, so
    /// that the end of a CNAME chain counts).
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.message
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect()
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
    let id = query.metadata.id;
    let started = Instant::now();
    let (message, transport) = match server.transport {
        Transport::Tcp => (
            tcp(server.addr, &bytes, id, deadline, trace).await?,
            Transport::Tcp,
        ),
        Transport::Udp => {
            let message = udp(server.addr, &bytes, id, deadline).await?;
            if message.metadata.truncation {
                // The whole answer does not fit a datagram: ask again over TCP, as resolvers do.
                (
                    tcp(server.addr, &bytes, id, deadline, trace).await?,
                    Transport::Tcp,
                )
            } else {
                (message, Transport::Udp)
            }
        }
    };
    Ok(Reply {
        message,
        took: started.elapsed(),
        transport,
    })
}

async fn udp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    deadline: Instant,
) -> Result<Message, Failure> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("a literal address")
    } else {
        "[::]:0".parse().expect("a literal address")
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| Failure::io(&e, "opening a UDP socket"))?;
    // Connected: the kernel drops datagrams from anyone else, and reports a closed port.
    socket
        .connect(server)
        .await
        .map_err(|e| Failure::io(&e, &format!("addressing {server}")))?;
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
        match Message::from_vec(&buf[..n]) {
            // A late answer to an earlier question of this socket cannot exist (it is new),
            // but a spoofed or garbled one can: keep waiting for ours.
            Ok(message) if message.metadata.id == id => return Ok(message),
            Ok(_) => continue,
            Err(e) => {
                return Err(Failure::new(
                    Reason::DnsError,
                    format!("{server} answered with a malformed message: {e}"),
                ));
            }
        }
    }
}

async fn tcp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    deadline: Instant,
    trace: &mut Trace,
) -> Result<Message, Failure> {
    let (mut stream, _) = crate::net::connect(server, deadline).await.map_err(|f| {
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
    let _ = crate::probe::tcp::close(stream, deadline, trace).await;
    let answer = match answer {
        Err(_) => return Err(silent(server)),
        Ok(Err(e)) => return Err(unanswered(server, &e)),
        Ok(Ok(answer)) => answer,
    };
    match Message::from_vec(&answer) {
        Ok(message) if message.metadata.id == id => Ok(message),
        Ok(_) => Err(Failure::new(
            Reason::DnsError,
            format!("{server} answered another question (wrong message id)"),
        )),
        Err(e) => Err(Failure::new(
            Reason::DnsError,
            format!("{server} answered with a malformed message: {e}"),
        )),
    }
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
pub fn system_server() -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("cannot read /etc/resolv.conf: {e}"))?;
    first_nameserver(&text).ok_or_else(|| "/etc/resolv.conf lists no nameserver".to_string())
}

fn first_nameserver(text: &str) -> Option<SocketAddr> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            return None;
        }
        // A scoped IPv6 address (`fe80::1%eth0`) keeps only the address.
        let ip = words.next()?.split('%').next()?;
        Some(SocketAddr::new(ip.parse().ok()?, 53))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_nameserver_line_wins() {
        let text = "# comment\nsearch example.com\nnameserver 10.0.0.53\nnameserver 10.0.0.54\n";
        assert_eq!(
            first_nameserver(text),
            Some("10.0.0.53:53".parse().unwrap())
        );
        assert_eq!(
            first_nameserver("nameserver fe80::1%eth0\n"),
            Some("[fe80::1]:53".parse().unwrap())
        );
        assert_eq!(first_nameserver("search x\n"), None);
    }

    #[test]
    fn rcodes_are_named_as_dig_names_them() {
        assert_eq!(rcode_name(ResponseCode::NoError), "NOERROR");
        assert_eq!(rcode_name(ResponseCode::NXDomain), "NXDOMAIN");
        assert_eq!(rcode_name(ResponseCode::ServFail), "SERVFAIL");
        assert_eq!(rcode_name(<ResponseCode as From<u16>>::from(12)), "RCODE12");
    }
}
