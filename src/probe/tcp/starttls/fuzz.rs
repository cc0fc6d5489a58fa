//! The `starttls` and `ldap_ber` fuzz targets: every dialect's negotiation, and what it says
//! inside TLS afterwards, against a peer that sends arbitrary bytes in arbitrary pieces and
//! pauses; and LDAP's BER reader on its own.

use std::sync::LazyLock;
use std::time::Duration;

use tokio::time::Instant;

use super::super::TcpProbe;
use super::super::peer::{Peer, Script, block_on};
use super::common::Names;
use super::wire::Wire;
use super::{Dialect, ber, farewell, leave_untrusted, negotiate, postgres, xmpp};
use crate::net::{Host, IpVersion};
use crate::outcome::{Event, QUOTE_LIMIT, ReasonSet, Trace};
use crate::tls::fuzz::client;

/// What a tcp target with STARTTLS declares it can fail with: every failure must be one.
static REASONS: LazyLock<ReasonSet> = LazyLock::new(|| {
    let host = Host::Name("fuzz.example".to_string());
    let probe = TcpProbe {
        tls: Some(Box::new(
            client().target(&host).expect("a valid server name"),
        )),
        host,
        port: 25,
        ip_version: IpVersion::Auto,
        resolver: None,
        steps: Vec::new(),
        hold: Duration::ZERO,
        starttls: Some(Dialect::Smtp),
    };
    probe.reasons()
});

/// The request that asks each dialect's server to go ahead: the last thing we send before a
/// negotiation may succeed.
fn upgrade_request(dialect: Dialect) -> &'static [u8] {
    match dialect {
        Dialect::Smtp => b"STARTTLS\r\n",
        Dialect::Imap => b"v1 STARTTLS\r\n",
        Dialect::Pop3 => b"STLS\r\n",
        Dialect::Ftp => b"AUTH TLS\r\n",
        Dialect::Postgres => &postgres::SSL_REQUEST,
        Dialect::Ldap => ber::START_TLS,
        Dialect::Xmpp => xmpp::STARTTLS.as_bytes(),
    }
}

/// The longest a line of the run's events may be: a quote of [`QUOTE_LIMIT`] bytes, each
/// escaped in at most 10 characters, and a few words around it.
const EVENT_TEXT_LIMIT: usize = QUOTE_LIMIT * 10 + 64;

/// One input: a byte that picks the dialect (and, by its top bit, whether the certificate is
/// trusted afterwards), two bytes (big-endian) that count the plaintext's bytes, then the
/// peer's [`Script`]: its bytes up to that count are the plaintext dialogue, the rest what the
/// server says inside TLS.
pub fn starttls(data: &[u8]) {
    let [choice, high, low, script @ ..] = data else {
        return;
    };
    let dialect = Dialect::ALL[usize::from(choice & 0x7f) % Dialect::ALL.len()];
    let trusted = choice & 0x80 == 0;
    let script = Script::parse(script);
    let plaintext = usize::from(u16::from_be_bytes([*high, *low])).min(script.bytes.len());
    let (before, inside) = script.bytes.split_at(plaintext);
    let mut peer = Peer::new(Script {
        bytes: before,
        ..script
    });
    let mut tls = Peer::new(Script {
        bytes: inside,
        ..script
    });
    let names = Names {
        client: "[127.0.0.1]".to_string(),
        domain: "fuzz.example".to_string(),
    };
    let mut trace = Trace::start();
    block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut wire = Wire::new(&mut peer, deadline, &mut trace);
        let negotiated = match negotiate(dialect, &mut wire, &names).await {
            Ok(()) => wire.nothing_pending(),
            Err(failure) => Err(failure),
        };
        if let Err(failure) = &negotiated {
            assert!(REASONS.contains(failure.reason), "{failure}");
            return;
        }
        assert!(
            wire.stream.received.ends_with(upgrade_request(dialect)),
            "{dialect:?} went ahead without asking"
        );
        let mut wire = Wire::new(&mut tls, deadline, wire.trace);
        let after = if trusted {
            farewell(dialect, &mut wire, &names).await
        } else {
            leave_untrusted(dialect, &mut wire, &names).await
        };
        if let Err(failure) = after {
            assert!(REASONS.contains(failure.reason), "{failure}");
        }
    });
    for event in &trace.events {
        if let Event::Said { text, .. } = &event.what {
            assert!(text.len() <= EVENT_TEXT_LIMIT, "{text}");
        }
    }
}

/// One input: an LDAP message, read by the BER parser alone and then as the answer to
/// StartTLS over the wire.
pub fn ldap_ber(data: &[u8]) {
    if let Some((tag, content, rest)) = ber::element(data) {
        assert_eq!(tag, data[0]);
        // Header, content and rest are the input, in order, and nothing beyond it.
        let header = data.len() - content.len() - rest.len();
        assert!((2..=6).contains(&header));
        assert_eq!(&data[header..header + content.len()], content);
        assert_eq!(&data[header + content.len()..], rest);
    }
    if let Ok(response) = ber::parse_extended_response(data) {
        assert!(response.diagnostic.len() <= data.len() * 3);
        assert!(!response.to_string().is_empty());
    }
    let mut peer = Peer::new(Script {
        bytes: data,
        ..Script::parse(&[])
    });
    let mut trace = Trace::start();
    let answer = block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut wire = Wire::new(&mut peer, deadline, &mut trace);
        wire.ldap_extended(ber::START_TLS, 1, "StartTLS").await
    });
    match answer {
        Ok(response) => assert_eq!(response.message_id, 1),
        Err(failure) => assert!(REASONS.contains(failure.reason), "{failure}"),
    }
}
