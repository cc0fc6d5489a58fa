//! The ICMP probe: `count` echo requests, spaced out, and the round trips and loss of their
//! replies.
//!
//! Each run opens its own ICMP socket: an unprivileged ping socket where
//! `net.ipv4.ping_group_range` allows it, else a raw socket (root or CAP_NET_RAW). The kernel
//! gives every ping socket its own identifier, and sequence numbers come from one counter for
//! the whole process, so concurrent runs against the same host never take each other's replies.

pub mod config;
pub mod metrics;
pub mod report;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::Duration;

use surge_ping::{Client, Config, ICMP, IcmpPacket, PingIdentifier, PingSequence, SurgeError};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use crate::net::{self, Host, IpVersion, dns};
use crate::outcome::{Failure, Outcome, Reason, ReasonSet, Trace};

/// The longest pause between two echoes of a run.
const MAX_SPACING: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct IcmpProbe {
    pub host: Host,
    pub ip_version: IpVersion,
    pub resolver: Option<dns::Server>,
    pub count: u16,
    pub payload_size: usize,
    /// The run fails with `icmp_packet_loss` when more than this share of echoes is lost.
    pub max_loss_ratio: f64,
}

/// What the echoes of a run showed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IcmpFacts {
    pub sent: u16,
    /// Round trips of the echoes answered, in the order they were sent.
    pub rtts: Vec<Duration>,
    /// The pause between the sends of two echoes.
    pub spacing: Duration,
    /// Opening the ICMP socket: our own cost, kept apart from the round trips it precedes.
    pub setup: Duration,
    /// The TTL of the first reply, as the IP header it came in says; only a raw IPv4 socket
    /// sees that header (a ping socket hands over the ICMP message alone).
    pub hop_limit: Option<u8>,
}

impl IcmpFacts {
    pub fn loss_ratio(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        f64::from(self.sent - self.rtts.len() as u16) / f64::from(self.sent)
    }

    /// min, avg, max and the population standard deviation, in seconds; `None` without replies.
    pub fn stats(&self) -> Option<[f64; 4]> {
        let secs: Vec<f64> = self.rtts.iter().map(Duration::as_secs_f64).collect();
        let n = secs.len() as f64;
        let min = secs.iter().copied().reduce(f64::min)?;
        let max = secs.iter().copied().reduce(f64::max)?;
        let avg = secs.iter().sum::<f64>() / n;
        let variance = secs.iter().map(|s| (s - avg).powi(2)).sum::<f64>() / n;
        Some([min, avg, max, variance.sqrt()])
    }
}

/// One counter for the process: see the module comment.
static SEQUENCE: AtomicU16 = AtomicU16::new(0);

/// Every reason an icmp run can end with.
pub const REASONS: ReasonSet = ReasonSet::of(&[
    Reason::DnsError,
    Reason::IcmpNoReply,
    Reason::IcmpPacketLoss,
    Reason::HostUnreachable,
    Reason::NetworkUnreachable,
    Reason::PermissionDenied,
    Reason::IoError,
    Reason::Timeout,
]);

impl IcmpProbe {
    /// `check-config`'s words for the echoes.
    pub fn summary(&self) -> String {
        format!(", {} echoes of {} bytes", self.count, self.payload_size)
    }

    /// The same echoes to another host.
    pub fn retarget(&self, address: &str) -> Result<IcmpProbe, String> {
        let host = Host::parse(address.trim())?;
        host.check_destination()?;
        Ok(IcmpProbe {
            host,
            ..self.clone()
        })
    }

    /// The facts are the echoes, once the host was found and a socket opened.
    pub async fn attempt(&self, deadline: Instant) -> Outcome<Option<IcmpFacts>> {
        let mut trace = Trace::start();
        let mut facts = None;
        let result = self.echo(deadline, &mut trace, &mut facts).await;
        Outcome::with_facts(result, trace, facts)
    }

    async fn echo(
        &self,
        deadline: Instant,
        trace: &mut Trace,
        seen: &mut Option<IcmpFacts>,
    ) -> Result<(), Failure> {
        let ip = net::locate(
            &self.host,
            0,
            self.ip_version,
            self.resolver,
            deadline,
            trace,
        )
        .await?
        .ip();
        let opening = Instant::now();
        let client = client(ip)?;
        let setup = opening.elapsed();
        let payload = vec![0u8; self.payload_size];
        let start = Instant::now();
        let left = deadline.saturating_duration_since(start);
        // Spread over at most half the time left, so the last echo still has time to return;
        // replies are awaited until nine tenths of it, so the run reports before its deadline.
        let spacing = MAX_SPACING.min(left / (2 * u32::from(self.count)));
        let replies_until = start + left.mul_f64(0.9);
        let mut echoes = JoinSet::new();
        for i in 0..self.count {
            let send_at = start + spacing * u32::from(i);
            let client = client.clone();
            let payload = payload.clone();
            let sequence = PingSequence(SEQUENCE.fetch_add(1, Ordering::Relaxed));
            echoes.spawn(async move {
                sleep_until(send_at).await;
                let mut pinger = client.pinger(ip, PingIdentifier(identifier())).await;
                pinger.timeout(replies_until.saturating_duration_since(Instant::now()));
                // Timed here, around the send: surge-ping starts its clock after the send returns,
                // and on a fast path (loopback) the reply can arrive before that, reading as 0.
                let sent = Instant::now();
                let reply = pinger.ping(sequence, &payload).await;
                (
                    i,
                    sent,
                    reply.map(|(packet, _)| (is_echo_reply(&packet), sent.elapsed(), ttl(&packet))),
                )
            });
        }
        let mut rtts = vec![None; usize::from(self.count)];
        let mut ttls = vec![None; usize::from(self.count)];
        let mut error = None;
        let (mut first_sent, mut last_sent) = (None::<Instant>, None::<Instant>);
        while let Some(joined) = echoes.join_next().await {
            let Ok((i, sent, result)) = joined else {
                continue;
            };
            first_sent = Some(first_sent.map_or(sent, |t| t.min(sent)));
            last_sent = Some(last_sent.map_or(sent, |t| t.max(sent)));
            match result {
                Ok((true, rtt, ttl)) => {
                    rtts[usize::from(i)] = Some(rtt);
                    ttls[usize::from(i)] = ttl;
                }
                // A raw socket also sees the errors that routers send back about our echoes.
                Ok((false, ..)) => {
                    error = Some(Failure::new(
                        Reason::HostUnreachable,
                        format!("{ip} is unreachable: an echo was answered with an ICMP error"),
                    ));
                }
                Err(SurgeError::Timeout { .. }) => {}
                Err(SurgeError::IOError(e)) => {
                    error = Some(net::failure(&e, "sending an echo request"))
                }
                Err(other) => error = Some(Failure::new(Reason::IoError, format!("echo: {other}"))),
            }
        }
        let facts = IcmpFacts {
            sent: self.count,
            rtts: rtts.into_iter().flatten().collect(),
            spacing,
            setup,
            hop_limit: ttls.into_iter().flatten().next(),
        };
        // The echoes are spread out so that a path that polices bursts of ICMP does not read
        // as lossy. The time from the first send to the last is that spacing (and our timer's
        // lateness): ours, not the network's, so the run's duration leaves it out, and a
        // healthy run lasts about one round trip, as blackbox_exporter's single echo does.
        if let (Some(first), Some(last)) = (first_sent, last_sent) {
            trace.paused = last - first;
        }
        trace.answered = Some(trace.elapsed().saturating_sub(trace.paused));
        let loss = facts.loss_ratio();
        let received = facts.rtts.len();
        *seen = Some(facts);
        if received == 0 {
            return Err(error.unwrap_or_else(|| {
                Failure::new(
                    Reason::IcmpNoReply,
                    format!("none of {} echo requests to {ip} was answered", self.count),
                )
            }));
        }
        if loss > self.max_loss_ratio {
            return Err(Failure::new(
                Reason::IcmpPacketLoss,
                format!(
                    "{received} of {} echoes answered: {:.0}% lost, more than max_loss_ratio {}",
                    self.count,
                    loss * 100.0,
                    self.max_loss_ratio
                ),
            ));
        }
        Ok(())
    }
}

/// Whether a packet that answered an echo is its reply, rather than an ICMP error about it
/// (destination unreachable, time exceeded) quoting the request.
fn is_echo_reply(packet: &IcmpPacket) -> bool {
    match packet {
        IcmpPacket::V4(p) => p.get_icmp_type().0 == 0,
        IcmpPacket::V6(p) => p.get_icmpv6_type().0 == 129,
    }
}

/// The TTL a reply arrived with, when its IP header was seen. surge-ping reports IPv6 hop
/// limits as 0 whatever they were, so only IPv4 gives one.
fn ttl(packet: &IcmpPacket) -> Option<u8> {
    match packet {
        IcmpPacket::V4(p) => p.get_ttl(),
        IcmpPacket::V6(_) => None,
    }
}

/// The identifier of a run's echoes on a raw socket (ping sockets get theirs from the kernel):
/// random, so that two vantage processes on one host (two containers that are both PID 1)
/// do not read each other's replies.
fn identifier() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u16
}

/// A new ICMP socket for `ip`'s family. Without the right to open one, the run fails with
/// `permission_denied`, and the log says once what to grant.
fn client(ip: IpAddr) -> Result<Client, Failure> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let kind = if ip.is_ipv4() { ICMP::V4 } else { ICMP::V6 };
    Client::new(&Config::builder().kind(kind).build()).map_err(|e| {
        if e.kind() != std::io::ErrorKind::PermissionDenied {
            return net::failure(&e, "opening an ICMP socket");
        }
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "icmp probes cannot open an ICMP socket: allow ping sockets for vantage's group \
                 with the sysctl net.ipv4.ping_group_range, or grant CAP_NET_RAW \
                 (README: ICMP rights)"
            );
        }
        Failure::new(
            Reason::PermissionDenied,
            "no right to open an ICMP socket: allow ping sockets (sysctl net.ipv4.ping_group_range) \
             or grant CAP_NET_RAW",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_loss_of_the_replies() {
        let facts = IcmpFacts {
            sent: 4,
            rtts: vec![
                Duration::from_millis(10),
                Duration::from_millis(20),
                Duration::from_millis(30),
            ],
            spacing: Duration::from_secs(1),
            ..IcmpFacts::default()
        };
        assert_eq!(facts.loss_ratio(), 0.25);
        let [min, avg, max, stddev] = facts.stats().unwrap();
        assert_eq!((min, avg, max), (0.010, 0.020, 0.030));
        assert!((stddev - 0.008_165).abs() < 1e-6, "{stddev}");
        assert_eq!(IcmpFacts::default().stats(), None);
    }
}
