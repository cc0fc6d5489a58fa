//! The verified chain: the path from the leaf to a trusted root that verification actually
//! takes, as opposed to everything the server presented.
//!
//! A server may send more than clients use: an extra cross-signed root, a legacy intermediate.
//! The earliest expiry over the presented chain counts those too, and a certificate that no
//! client relies on then raises a false alarm (blackbox_exporter's old one). rustls's verifier
//! does not say which path it built, so the path is built again here with rustls-webpki, over
//! the same roots, intermediates, time and signature algorithms.

use rustls::pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use super::roots::{Roots, provider};

/// Which certificates the verified path is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    /// The positions in the presented chain of the path's certificates, leaf (0) first.
    pub presented: Vec<usize>,
    pub anchor: Anchor,
}

/// The trust anchor a verified path ends at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub subject: String,
    /// Its position in the presented chain, when the server sent the root too.
    pub presented: Option<usize>,
    /// The end of the trusted certificate's validity, when vantage holds that certificate (from
    /// a `ca_file` or the system store); never the validity of a copy the server sent. Mozilla's
    /// roots come without one.
    pub not_after: Option<i64>,
}

impl VerifiedChain {
    /// Whether the presented certificate at `index` is on the path, the root included.
    pub fn contains(&self, index: usize) -> bool {
        self.presented.contains(&index) || self.anchor.presented == Some(index)
    }
}

/// The path that verification takes from `end_entity` through `intermediates` to one of
/// `roots`, or `None` when none verifies.
pub fn verified_chain(
    roots: &Roots,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Option<VerifiedChain> {
    let leaf = webpki::EndEntityCert::try_from(end_entity).ok()?;
    let algorithms = provider().signature_verification_algorithms.all;
    let path = leaf
        .verify_for_usage(
            algorithms,
            &roots.store.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .ok()?;
    let position = |der: &[u8]| {
        intermediates
            .iter()
            .position(|c| c.as_ref() == der)
            .map(|i| i + 1)
    };
    let mut presented = vec![0];
    presented.extend(
        path.intermediate_certificates()
            .filter_map(|c| position(c.der().as_ref())),
    );
    let anchor = path.anchor();
    // The root itself, when the server sends it: self-issued, with the anchor's name and key. A
    // cross-signature has both too, but another issuer; it is exactly what clients do not use.
    let sent_root = intermediates.iter().enumerate().find(|(_, c)| {
        self_issued(c)
            && webpki::anchor_from_trusted_cert(c).is_ok_and(|a| {
                a.subject == anchor.subject
                    && a.subject_public_key_info == anchor.subject_public_key_info
            })
    });
    // Only the trusted certificate's validity: clients trust the anchor from their own store
    // and never the copy a server sends, which may be another issue of it (even an expired one).
    let not_after = roots.certificate_of(anchor).and_then(|c| c.not_after);
    Some(VerifiedChain {
        presented,
        anchor: Anchor {
            subject: name(anchor.subject.as_ref()),
            presented: sent_root.map(|(i, _)| i + 1),
            not_after,
        },
    })
}

fn self_issued(der: &[u8]) -> bool {
    X509Certificate::from_der(der).is_ok_and(|(_, c)| c.subject().as_raw() == c.issuer().as_raw())
}

/// A distinguished name in words, from the contents of its DER sequence (what a trust anchor
/// keeps).
fn name(contents: &[u8]) -> String {
    let mut der = vec![0x30];
    let len = contents.len();
    match len {
        0..0x80 => der.push(len as u8),
        0x80..0x100 => der.extend([0x81, len as u8]),
        _ => der.extend([0x82, (len >> 8) as u8, len as u8]),
    }
    der.extend_from_slice(contents);
    X509Name::from_der(&der).map_or_else(|_| String::new(), |(_, n)| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_from_their_contents_whatever_their_length() {
        let cn = |value: &str| {
            let mut atv = vec![0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, value.len() as u8];
            atv.extend_from_slice(value.as_bytes());
            let mut set = vec![0x30, atv.len() as u8];
            set.extend(atv);
            let mut rdn = vec![0x31, set.len() as u8];
            rdn.extend(set);
            rdn
        };
        assert_eq!(name(&cn("Root")), "CN=Root");
        let long = "x".repeat(110);
        let three = [cn(&long), cn(&long), cn(&long)].concat();
        assert!(three.len() > 0xff);
        assert_eq!(name(&three), format!("CN={long}, CN={long}, CN={long}"));
        assert_eq!(name(b"\x01"), "");
    }
}
