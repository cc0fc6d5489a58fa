//! rustls errors classified by type, never by text: the stable reason of each, and the words
//! for the failure's detail (alert names as the RFCs spell them).

use rustls::{AlertDescription, CertificateError, InvalidMessage, PeerIncompatible};

use crate::outcome::{Failure, Reason, ReasonSet};

/// Every reason a TLS handshake and its verdict can end with. The chain's expiry fails a run
/// only through a `certificate_expiry` assertion, which adds `tls_cert_expiring` itself.
pub const REASONS: ReasonSet = ReasonSet::of(&[
    Reason::TlsHandshakeTimeout,
    Reason::TlsCertExpired,
    Reason::TlsCertNotYetValid,
    Reason::TlsHostnameMismatch,
    Reason::TlsUnknownIssuer,
    Reason::TlsCertInvalid,
    Reason::TlsProtocolVersion,
    Reason::TlsAlert,
    Reason::TlsHandshakeFailed,
]);

/// A socket or TLS error as a failure: a rustls error inside it by its type (an alert, a
/// certificate problem), anything else by kind; `doing` says what the probe was doing.
pub fn failure(err: &std::io::Error, doing: &str) -> Failure {
    match rustls_error(err) {
        Some(tls) => Failure::new(reason(tls), format!("{doing}: {}", describe(tls))),
        None => crate::net::failure(err, doing),
    }
}

/// The rustls error inside an I/O error from tokio-rustls, if that is what it is.
pub fn rustls_error(err: &std::io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

/// The stable reason for a rustls error.
pub fn reason(err: &rustls::Error) -> Reason {
    use rustls::Error;
    match err {
        Error::AlertReceived(AlertDescription::ProtocolVersion) => Reason::TlsProtocolVersion,
        Error::AlertReceived(_) => Reason::TlsAlert,
        Error::PeerIncompatible(
            PeerIncompatible::ServerDoesNotSupportTls12Or13
            | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig
            | PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled,
        ) => Reason::TlsProtocolVersion,
        Error::InvalidCertificate(e) => certificate_reason(e),
        _ => Reason::TlsHandshakeFailed,
    }
}

fn certificate_reason(err: &CertificateError) -> Reason {
    match err {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            Reason::TlsCertExpired
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            Reason::TlsCertNotYetValid
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            Reason::TlsHostnameMismatch
        }
        // A signature that does not verify is a chain that does not lead to a trusted root.
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            Reason::TlsUnknownIssuer
        }
        // What `openssl req -x509` makes: a self-signed certificate that is also a CA.
        CertificateError::Other(other) if is_ca_used_as_leaf(other) => Reason::TlsUnknownIssuer,
        _ => Reason::TlsCertInvalid,
    }
}

fn is_ca_used_as_leaf(err: &rustls::OtherError) -> bool {
    matches!(
        err.0.downcast_ref::<webpki::Error>(),
        Some(webpki::Error::CaUsedAsEndEntity)
    )
}

pub(super) fn certificate_failure(err: &rustls::Error) -> Failure {
    Failure::new(reason(err), describe(err))
}

/// A rustls error in words, with alert names as the RFCs spell them.
pub fn describe(err: &rustls::Error) -> String {
    match err {
        rustls::Error::AlertReceived(alert) => {
            let hint = match alert {
                AlertDescription::CertificateRequired => {
                    ": the server requires a client certificate (tls.cert_file and tls.key_file)"
                }
                _ => "",
            };
            format!("the server sent the TLS alert {}{hint}", alert_name(*alert))
        }
        rustls::Error::InvalidCertificate(CertificateError::Other(other))
            if is_ca_used_as_leaf(other) =>
        {
            "the server's certificate is a CA certificate (self-signed, basicConstraints CA:TRUE); \
             it is not accepted as a server certificate even from ca_file: serve a leaf \
             certificate issued by it"
                .to_string()
        }
        rustls::Error::InvalidMessage(message) => invalid_message(*message, err),
        rustls::Error::InappropriateMessage { .. } => {
            format!("the server sent a TLS message out of order: {err}")
        }
        other => other.to_string(),
    }
}

/// Only bytes that do not frame as TLS records suggest another protocol on the port; a message
/// that frames but fails to parse is a TLS server's fault, and says so.
fn invalid_message(message: InvalidMessage, err: &rustls::Error) -> String {
    match message {
        InvalidMessage::InvalidContentType
        | InvalidMessage::UnknownProtocolVersion
        | InvalidMessage::InvalidEmptyPayload => {
            format!("the peer's answer is not TLS (a plaintext service on this port?): {err}")
        }
        // A record's header claiming more than TLS allows (the other source, a compressed
        // certificate, cannot arrive: vantage offers no certificate compression).
        InvalidMessage::MessageTooLarge => {
            format!("the server sent a TLS record larger than the protocol allows: {err}")
        }
        InvalidMessage::HandshakePayloadTooLarge | InvalidMessage::CertificatePayloadTooLarge => {
            format!(
                "the server sent a handshake message over the 64 KiB that rustls (vantage's TLS \
                 library) accepts, most often a certificate chain that large: {err}"
            )
        }
        _ => format!("the server sent a malformed TLS message: {err}"),
    }
}

/// `CertificateRequired` -> `certificate_required`.
fn alert_name(alert: AlertDescription) -> String {
    let Some(name) = alert.as_str() else {
        return format!("{}", u8::from(alert));
    };
    // A capital starts a word unless it follows another (UnknownCA is unknown_ca).
    let mut out = String::new();
    let mut previous_upper = true;
    for c in name.chars() {
        if c.is_ascii_uppercase() && !previous_upper {
            out.push('_');
        }
        previous_upper = c.is_ascii_uppercase();
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Why a handshake failed that our verifier did not refuse. Certificates are only recorded, so
/// a certificate error here comes from the handshake signature check.
pub(super) fn handshake_failure(err: &std::io::Error) -> Failure {
    if let Some(rustls::Error::InvalidCertificate(
        CertificateError::BadSignature
        | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. },
    )) = rustls_error(err)
    {
        return Failure::new(
            Reason::TlsHandshakeFailed,
            "the server's handshake signature does not verify with its certificate's key",
        );
    }
    if rustls_error(err).is_none() && err.kind() == std::io::ErrorKind::UnexpectedEof {
        return Failure::new(
            Reason::TlsHandshakeFailed,
            "the peer closed the connection during the TLS handshake (is it TLS on this port?)",
        );
    }
    failure(err, "TLS handshake")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_names_are_the_rfc_spelling() {
        assert_eq!(alert_name(AlertDescription::UnknownCA), "unknown_ca");
        assert_eq!(
            alert_name(AlertDescription::CertificateRequired),
            "certificate_required"
        );
        assert_eq!(
            alert_name(AlertDescription::HandshakeFailure),
            "handshake_failure"
        );
    }

    #[test]
    fn only_bytes_that_do_not_frame_as_tls_are_called_not_tls() {
        let describe = |m| describe(&rustls::Error::InvalidMessage(m));
        assert!(describe(InvalidMessage::InvalidContentType).contains("not TLS"));
        let too_large = describe(InvalidMessage::HandshakePayloadTooLarge);
        assert!(too_large.contains("over the 64 KiB"), "{too_large}");
        let malformed = describe(InvalidMessage::MissingData("x"));
        assert!(malformed.contains("malformed TLS message"), "{malformed}");
    }

    #[test]
    fn certificate_errors_map_to_their_reasons() {
        let cases = [
            (CertificateError::Expired, Reason::TlsCertExpired),
            (CertificateError::NotValidYet, Reason::TlsCertNotYetValid),
            (
                CertificateError::NotValidForName,
                Reason::TlsHostnameMismatch,
            ),
            (CertificateError::UnknownIssuer, Reason::TlsUnknownIssuer),
            (CertificateError::InvalidPurpose, Reason::TlsCertInvalid),
        ];
        for (err, expected) in cases {
            assert_eq!(reason(&rustls::Error::InvalidCertificate(err)), expected);
        }
        assert_eq!(
            reason(&rustls::Error::AlertReceived(
                AlertDescription::ProtocolVersion
            )),
            Reason::TlsProtocolVersion
        );
        assert_eq!(
            reason(&rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
            )),
            Reason::TlsAlert
        );
    }
}
