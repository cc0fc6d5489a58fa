//! DANGER: a certificate verifier that accepts every certificate.
//!
//! It exists so that a probe can finish the handshake with a server whose certificate is bad and
//! still report the chain, the version and the cipher (a failed rustls handshake leaves nothing
//! to inspect). It records the real verdict of the wrapped webpki verifier, and the probe fails
//! the run with that verdict afterwards; nothing is sent over a connection it let through unless
//! the target has `verify: false`. Signature checks are delegated, so they stay real: a server
//! that cannot prove it holds the certificate's key still fails the handshake.
//!
//! One exception: with a client certificate and `verify` on, it refuses a bad certificate
//! (`Refuse`), because going on would send our certificate to a server we do not trust. The
//! chain is still recorded; only the version and cipher are then unknown.
//!
//! One instance per handshake: it holds that handshake's record.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};

use super::roots::Trusted;

/// What the server presented and what the real verification said about it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The presented chain, leaf first, as sent.
    pub chain: Vec<CertificateDer<'static>>,
    /// Whether the chain verifies to a trusted root (the hostname aside).
    pub chain_verdict: Result<(), Error>,
    /// The time the verdict was given for, so that the verified path can be found again after
    /// the handshake, outside its timer (see `TlsTarget::handshake`).
    pub now: UnixTime,
    /// Whether the leaf is valid for the server name (the chain aside).
    pub hostname_verdict: Result<(), Error>,
    /// The handshake was refused here, by `Refuse`.
    pub refused: bool,
}

/// Which bad certificates end the handshake instead of only being recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refuse {
    Nothing,
    BadChain,
    BadChainOrName,
}

#[derive(Debug)]
pub struct AcceptAnyCertificateAndRecord {
    real: Arc<Trusted>,
    refuse: Refuse,
    record: Mutex<Option<Recorded>>,
}

impl AcceptAnyCertificateAndRecord {
    pub fn new(real: Arc<Trusted>, refuse: Refuse) -> Self {
        AcceptAnyCertificateAndRecord {
            real,
            refuse,
            record: Mutex::new(None),
        }
    }

    /// The record of the handshake, once the server's certificate arrived.
    pub fn recorded(&self) -> Option<Recorded> {
        self.record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn is_name_error(err: &Error) -> bool {
    matches!(
        err,
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

impl ServerCertVerifier for AcceptAnyCertificateAndRecord {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        // webpki checks the chain first and the name second, so a name error means the chain
        // passed; the name is checked on its own so that a bad chain does not hide it.
        let chain_verdict = match self.real.verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(e) if is_name_error(&e) => Ok(()),
            other => other.map(|_| ()),
        };
        let hostname_verdict = ParsedCertificate::try_from(end_entity)
            .and_then(|leaf| rustls::client::verify_server_name(&leaf, server_name));
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        let refusal = match self.refuse {
            Refuse::Nothing => None,
            Refuse::BadChain => chain_verdict.clone().err(),
            Refuse::BadChainOrName => chain_verdict.clone().and(hostname_verdict.clone()).err(),
        };
        *self.record.lock().unwrap_or_else(PoisonError::into_inner) = Some(Recorded {
            chain,
            chain_verdict,
            now,
            hostname_verdict,
            refused: refusal.is_some(),
        });
        match refusal {
            Some(err) => Err(err),
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.real
            .verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.real
            .verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.real.verifier.supported_verify_schemes()
    }
}
