//! The TLS lines of `vantage probe`'s report: the handshake (version, cipher, key exchange),
//! every presented certificate, the verification verdicts with the path that verified, and the
//! expiry warning. tcp and http targets both print them, from the same [`TlsFacts`].

use std::time::{Duration, SystemTime};

use super::cert::CertFacts;
use super::{TlsFacts, VerifiedChain, unix_seconds};
use crate::duration::timing;
use crate::outcome::Failure;

/// The handshake (with its key exchange, and its duration when `handshake` is known), every
/// presented certificate with the days left as of `at`, the verification verdicts, and the
/// warning when the chain's expiry is within the target's `alert_before_expiry`.
pub fn lines(
    line: &mut impl FnMut(&str, String),
    facts: &TlsFacts,
    handshake: Option<Duration>,
    at: SystemTime,
) {
    let sni = match &facts.server_name {
        Some(name) => format!("SNI {name}"),
        None => "no SNI (IP address)".to_string(),
    };
    let alpn = match &facts.alpn {
        Some(protocol) => format!(", ALPN {protocol}"),
        None => String::new(),
    };
    let took = match handshake {
        Some(took) => format!(", handshake {}", timing(took)),
        None => String::new(),
    };
    let kx = match (&facts.key_exchange, facts.hello_retry) {
        (Some(group), false) => format!(" {group}"),
        (Some(group), true) => format!(" {group} (after a HelloRetryRequest)"),
        (None, _) => String::new(),
    };
    match (facts.version, &facts.cipher) {
        (Some(version), Some(cipher)) => {
            line("tls", format!("{version} {cipher}{kx}{took}, {sni}{alpn}"))
        }
        _ => line("tls", format!("handshake not completed, {sni}")),
    }
    let now = unix_seconds(at);
    for (i, cert) in facts.chain.iter().enumerate() {
        let off_path = match &facts.verified {
            Some(verified) if !verified.contains(i) => " (not on the verified path)",
            _ => "",
        };
        line(
            &format!("cert {i}"),
            format!("{}{off_path}", cert_subject(cert)),
        );
        line("", format!("issuer   {}", cert.issuer));
        if let (Some(from), Some(until)) = (cert.not_before, cert.not_after) {
            line(
                "",
                format!(
                    "valid    {} to {} ({})",
                    date(from),
                    date(until),
                    days_left(until - now)
                ),
            );
        }
        if !cert.names.is_empty() {
            line("", format!("names    {}", cert.names.join(", ")));
        }
        line("", format!("serial   {}", cert.serial));
        line("", format!("sha256   {}", cert.sha256));
    }
    if let Some(v) = &facts.verification {
        let verdict = |r: &Result<(), Failure>| match r {
            Ok(()) => "ok".to_string(),
            Err(f) => format!("FAILED {}: {}", f.reason, f.detail),
        };
        line("chain", verdict(&v.chain));
        if let Some(verified) = &facts.verified {
            line("", path(verified, now));
        }
        line("hostname", verdict(&v.hostname));
    }
    if let Some(warning) = facts.expiry_warning(at) {
        line("warning", warning);
    }
}

/// `verified cert 0 > cert 1 > root CN=R (not in the chain, valid to …)`.
fn path(verified: &VerifiedChain, now: i64) -> String {
    let mut steps: Vec<String> = verified
        .presented
        .iter()
        .map(|i| format!("cert {i}"))
        .collect();
    let root = match (verified.anchor.presented, verified.anchor.not_after) {
        (Some(i), None) => format!("root cert {i}"),
        (Some(i), Some(until)) => format!(
            "root cert {i} (trusted copy valid to {}, {})",
            date(until),
            days_left(until - now)
        ),
        (None, Some(until)) => format!(
            "root {} (not sent; valid to {}, {})",
            verified.anchor.subject,
            date(until),
            days_left(until - now)
        ),
        (None, None) => format!(
            "root {} (not sent; a compiled-in root, without a validity)",
            verified.anchor.subject
        ),
    };
    steps.push(root);
    format!("verified {}", steps.join(" > "))
}

fn days_left(seconds: i64) -> String {
    let left = seconds as f64 / 86_400.0;
    if left < 0.0 {
        format!("expired {:.1} days ago", -left)
    } else {
        format!("{left:.1} days left")
    }
}

fn cert_subject(cert: &CertFacts) -> String {
    if cert.not_after.is_none() {
        "(a certificate that could not be parsed)".to_string()
    } else if cert.subject.is_empty() {
        "(empty subject)".to_string()
    } else {
        cert.subject.clone()
    }
}

/// `2026-11-21 09:30:00 UTC`
fn date(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("@{unix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_line(facts: &TlsFacts) -> String {
        let mut first = None;
        lines(
            &mut |_, text| {
                first.get_or_insert(text);
            },
            facts,
            Some(Duration::from_millis(2)),
            SystemTime::UNIX_EPOCH,
        );
        first.unwrap()
    }

    #[test]
    fn the_handshake_line_names_the_group_and_a_retry() {
        let mut facts = TlsFacts {
            server_name: Some("vantage.test".into()),
            version: Some(crate::tls::TlsVersion::Tls13),
            cipher: Some("TLS_AES_128_GCM_SHA256".into()),
            key_exchange: Some("X25519".into()),
            ..TlsFacts::default()
        };
        assert_eq!(
            first_line(&facts),
            "TLSv1.3 TLS_AES_128_GCM_SHA256 X25519, handshake 2.000 ms, SNI vantage.test"
        );
        facts.key_exchange = Some("X25519MLKEM768".into());
        facts.hello_retry = true;
        assert!(
            first_line(&facts).starts_with(
                "TLSv1.3 TLS_AES_128_GCM_SHA256 X25519MLKEM768 (after a HelloRetryRequest), "
            ),
            "{}",
            first_line(&facts)
        );
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(date(1_795_000_000), "2026-11-18 11:06:40 UTC");
    }
}
