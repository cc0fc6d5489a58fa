//! The facts of one presented certificate, as metrics and reports show them.
//!
//! Every certificate of every chain is parsed on every run (a few microseconds each), because a
//! chain can change between runs: a renewal, a new intermediate, a different backend.

use std::fmt::Write as _;
use std::net::IpAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub subject: String,
    pub issuer: String,
    /// Subject and issuer as Go prints them (`dn`): blackbox_exporter's spelling.
    pub subject_go: String,
    pub issuer_go: String,
    /// Lowercase hex, as `openssl x509 -serial` prints it (without the colons).
    pub serial: String,
    /// The subject alternative names: DNS names, then IP addresses.
    pub names: Vec<String>,
    /// SHA-256 of the DER encoding, lowercase hex: the certificate's fingerprint.
    pub sha256: String,
    /// Validity bounds as Unix seconds; `None` when the certificate could not be parsed.
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
}

impl CertFacts {
    /// Reads a DER certificate. One that does not parse still yields its fingerprint, so that
    /// it shows up and can be found.
    pub fn inspect(der: &[u8]) -> CertFacts {
        let sha256 = hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref());
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return CertFacts {
                subject: String::new(),
                issuer: String::new(),
                subject_go: String::new(),
                issuer_go: String::new(),
                serial: String::new(),
                names: Vec::new(),
                sha256,
                not_before: None,
                not_after: None,
            };
        };
        CertFacts {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            subject_go: super::dn::go_string(cert.subject()),
            issuer_go: super::dn::go_string(cert.issuer()),
            serial: serial(cert.raw_serial()),
            names: names(&cert),
            sha256,
            not_before: Some(cert.validity().not_before.timestamp()),
            not_after: Some(cert.validity().not_after.timestamp()),
        }
    }
}

fn names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(n) => dns.push((*n).to_string()),
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                    _ => None,
                };
                ips.extend(ip.map(|ip| ip.to_string()));
            }
            _ => {}
        }
    }
    dns.extend(ips);
    dns
}

/// The serial's significant bytes: DER adds a leading zero byte to keep the number positive.
fn serial(raw: &[u8]) -> String {
    let significant = match raw {
        [0, rest @ ..] if !rest.is_empty() => rest,
        all => all,
    };
    hex(significant)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_drop_only_the_sign_padding() {
        assert_eq!(serial(&[0x00, 0x8f, 0x01]), "8f01");
        assert_eq!(serial(&[0x00]), "00");
        assert_eq!(serial(&[0x12, 0x00]), "1200");
    }

    #[test]
    fn garbage_still_has_a_fingerprint() {
        let facts = CertFacts::inspect(b"not a certificate");
        assert_eq!(facts.sha256.len(), 64);
        assert_eq!(facts.not_after, None);
    }
}
