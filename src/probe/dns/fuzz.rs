//! The `dns` fuzz target: a DNS server's answer, as bytes, through everything the client and
//! the dns probe do with it: the check that it answers us, the parse, the addresses along the
//! CNAME chain, the records as text, and the probe's judgement.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::LazyLock;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use regex::Regex;

use super::{DnsProbe, REASONS};
use crate::net::IpVersion;
use crate::net::dns::{Expected, Reply, Transport, rcode_name};
use crate::outcome::Reason;

static PATTERN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\sIN\s+(A|AAAA)\s").expect("a valid pattern"));

/// One input: the bytes of a datagram, or of a TCP answer without its length. Our question is
/// the one the answer echoes when it echoes one (any name and type can be configured), else a
/// fixed one; our message ID is the answer's, so that every parse is reached.
pub fn dns(data: &[u8]) {
    let echoed = Message::from_vec(data)
        .ok()
        .and_then(|m| match m.queries.as_slice() {
            [query] => Some(query.clone()),
            _ => None,
        });
    let question = echoed.unwrap_or_else(|| {
        let name = Name::from_ascii("www.example.com.").expect("a valid name");
        Query::query(name, RecordType::A)
    });
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    if let [high, low, ..] = data {
        query.metadata.id = u16::from_be_bytes([*high, *low]);
    }
    query.add_query(question.clone());
    let expect = Expected::new(&query);
    if !expect.ours(data) {
        // Over UDP it is ignored, over TCP refused, unparsed either way.
        return;
    }
    let server = SocketAddr::from(([127, 0, 0, 1], 53));
    let message = match expect.answer(server, data) {
        Ok(message) => message,
        Err(failure) => {
            assert_eq!(failure.reason, Reason::DnsError);
            return;
        }
    };
    let reply = Reply {
        message,
        took: Duration::ZERO,
        connected: None,
        transport: Transport::Udp,
    };
    let lines = reply.answer_lines();
    assert_eq!(lines.len(), reply.message.answers.len());
    let addresses = reply.addresses();
    let in_answers: BTreeSet<IpAddr> = reply
        .message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    assert!(addresses.iter().all(|a| in_answers.contains(a)));
    assert!(!rcode_name(reply.rcode()).is_empty());

    let probe = |valid_rcodes, expect_addresses, expect_regex| DnsProbe {
        written: question.name().to_string(),
        name: question.name().clone(),
        record_type: question.query_type(),
        server: Some(server),
        ip_version: IpVersion::Auto,
        transport: Transport::Udp,
        expect_addresses,
        expect_regex,
        valid_rcodes,
    };
    let expected: BTreeSet<IpAddr> = addresses.iter().copied().collect();
    for probe in [
        probe(vec![ResponseCode::NoError], None, None),
        probe(
            vec![ResponseCode::NoError, ResponseCode::NXDomain],
            Some(expected),
            Some(PATTERN.clone()),
        ),
    ] {
        match probe.judge(&reply, &lines) {
            Ok(()) => {
                let rcode = reply.rcode();
                assert!(probe.valid_rcodes.contains(&rcode));
                assert!(rcode != ResponseCode::NoError || !lines.is_empty());
            }
            Err(failure) => assert!(REASONS.contains(failure.reason), "{failure}"),
        }
    }
}
