//! The `certificates` fuzz target: a presented chain, as bytes, through everything a handshake
//! does with it (the recording verifier and its verdicts, each certificate's facts, the path
//! that verified, the expiry figures, the report), and the TLS clients the other targets need.
//! It trusts the fuzz corpus's own root (`fuzz/files/ca.pem`), so that its seed chains verify
//! and the verified-path code runs too.

use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::dangerous::{AcceptAnyCertificateAndRecord, Refuse};
use super::expiry::expiry_check;
use super::roots::Trusted;
use super::{TlsClient, TlsFacts, TlsOptions, Trust, report, trusted};
use crate::outcome::Reason;

/// The root that signed the corpus's chains.
pub const CA_PEM: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/files/ca.pem"));

/// The time every chain is judged at, inside the corpus certificates' validity: 2027-01-01.
pub const NOW: Duration = Duration::from_secs(1_798_761_600);

/// How far ahead the expiry warning looks.
const ALERT_BEFORE_EXPIRY: Duration = Duration::from_secs(30 * 86_400);

/// A TLS client with the default options, built once: it reads no file.
pub fn client() -> Arc<TlsClient> {
    static CLIENT: LazyLock<Arc<TlsClient>> = LazyLock::new(|| {
        let client = TlsClient::build(TlsOptions::default(), &mut |_| {
            Err(std::io::ErrorKind::NotFound.into())
        });
        Arc::new(client.expect("the default TLS options build"))
    });
    Arc::clone(&CLIENT)
}

fn trusted_fuzz_root() -> Arc<Trusted> {
    static TRUSTED: LazyLock<Arc<Trusted>> = LazyLock::new(|| {
        trusted(Trust::Mozilla, Some(Path::new("ca.pem")), &mut |_| {
            Ok(CA_PEM.to_vec())
        })
        .expect("the fuzz root is a usable trust root")
    });
    Arc::clone(&TRUSTED)
}

/// Splits concatenated DER certificates by their outer headers; what does not parse as one
/// goes whole into the last.
fn split_chain(mut data: &[u8]) -> Vec<CertificateDer<'static>> {
    let mut chain = Vec::new();
    while !data.is_empty() {
        let length = match data.get(1) {
            Some(&n) if n < 0x80 => Some(2 + usize::from(n)),
            Some(&n @ 0x81..=0x84) => {
                let count = usize::from(n & 0x7f);
                data.get(2..2 + count).map(|bytes| {
                    2 + count + bytes.iter().fold(0, |n, &b| (n << 8) | usize::from(b))
                })
            }
            _ => None,
        };
        let end = length.filter(|&l| l <= data.len()).unwrap_or(data.len());
        chain.push(CertificateDer::from(data[..end].to_vec()));
        data = &data[end..];
    }
    chain
}

/// One input: concatenated DER certificates, leaf first. Its length picks what the handshake
/// would refuse and which name it checks (a DNS name or an IP address), so that every input
/// takes one path through each choice.
pub fn certificates(data: &[u8]) {
    let chain = split_chain(data);
    let Some((leaf, intermediates)) = chain.split_first() else {
        // rustls never asks a verifier about an empty chain.
        return;
    };
    let refuse = [Refuse::Nothing, Refuse::BadChain, Refuse::BadChainOrName][data.len() % 3];
    let server_name = if data.len().is_multiple_of(2) {
        ServerName::try_from("fuzz.example").expect("a DNS name")
    } else {
        ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
    };
    let trusted = trusted_fuzz_root();
    let recorder = AcceptAnyCertificateAndRecord::new(Arc::clone(&trusted), refuse);
    let now = UnixTime::since_unix_epoch(NOW);
    let accepted = recorder.verify_server_cert(leaf, intermediates, &server_name, &[], now);
    let recorded = recorder
        .recorded()
        .expect("a verifier that was asked records");
    assert_eq!(accepted.is_err(), recorded.refused);
    if refuse == Refuse::Nothing {
        assert!(accepted.is_ok(), "only a refusing verifier refuses");
    }

    let mut facts = TlsFacts {
        server_name: Some("fuzz.example".to_string()),
        alert_before_expiry: Some(ALERT_BEFORE_EXPIRY),
        ..TlsFacts::default()
    };
    facts.record(recorded, &trusted.roots);
    assert_eq!(facts.chain.len(), chain.len());
    for cert in &facts.chain {
        assert_eq!(cert.sha256.len(), 64);
        assert_eq!(cert.not_before.is_some(), cert.not_after.is_some());
    }
    let verification = facts.verification.as_ref().expect("recorded verdicts");
    // The path is built again after the verdict: over the same roots and time, a chain that
    // verified must find its path again, or the report and the expiry lose it.
    assert_eq!(verification.chain.is_ok(), facts.verified.is_some());
    for failure in [&verification.chain, &verification.hostname]
        .into_iter()
        .filter_map(|v| v.as_ref().err())
    {
        assert!(super::REASONS.contains(failure.reason), "{failure}");
    }
    if let Some(verified) = &facts.verified {
        assert_eq!(verified.presented.first(), Some(&0));
        assert!(verified.presented.iter().all(|&i| i < chain.len()));
        assert!(verified.anchor.presented.is_none_or(|i| i < chain.len()));
    }

    let at = UNIX_EPOCH + NOW;
    if let Some(expiry) = facts.expiry() {
        let presented = facts
            .chain
            .iter()
            .any(|c| c.not_after == Some(expiry.not_after));
        assert!(presented || expiry.what.starts_with("root "), "{expiry:?}");
    }
    let check = expiry_check(&facts, at, ALERT_BEFORE_EXPIRY, "alert_before_expiry");
    if let Err(failure) = &check {
        assert!(matches!(
            failure.reason,
            Reason::TlsCertExpired | Reason::TlsCertExpiring
        ));
    }
    // The warning and the assertion judge the same expiry against the same threshold.
    let expiring = facts.expiring(at);
    assert_eq!(expiring, facts.expiry().map(|_| check.is_err()));
    assert_eq!(expiring == Some(true), facts.expiry_warning(at).is_some());
    report_lines(&facts, at);
}

fn report_lines(facts: &TlsFacts, at: SystemTime) {
    let mut lines = 0;
    report::lines(&mut |_, _| lines += 1, facts, None, at);
    assert!(lines > facts.chain.len());
}
