//! The roots a target's chains must lead to (Mozilla's set, the system store, a `ca_file`), the
//! verifier built over them with the one crypto provider, and the root certificates vantage
//! holds behind some of them: the verified chain's expiry counts a root's own validity when its
//! certificate is at hand.

use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, TrustAnchor};

use super::cert::CertFacts;

/// The one crypto provider (two in one process make rustls panic: ENGINEERING.md), built once
/// per process with its one-time work done.
///
/// aws-lc seeds its random generator on first use (about 25 ms, twenty loopback handshakes'
/// worth), and each key-exchange group sets itself up on its first key. Left lazy, that work
/// would land inside the first handshake a process times, and a fresh `vantage probe` would
/// report it as the network's. Clients are built with the config, before any run, so doing it
/// here keeps it out of every timer.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        warm_up(&provider);
        Arc::new(provider)
    }))
}

/// Does the provider's lazy one-time work: seeds its random generator and makes one key share
/// of each group a ClientHello offers. An error here is left for the handshake to meet and
/// report as the run's failure.
fn warm_up(provider: &CryptoProvider) {
    let _ = provider.secure_random.fill(&mut [0u8; 32]);
    for group in &provider.kx_groups {
        let _ = group.start();
    }
}

/// A target's trust: the rustls verifier that gives the verdict, and the roots it was built
/// over, which the verified path is built to again (see `path`).
#[derive(Debug)]
pub struct Trusted {
    pub verifier: Arc<WebPkiServerVerifier>,
    pub roots: Roots,
}

#[derive(Debug, Clone)]
pub struct Roots {
    pub store: Arc<RootCertStore>,
    /// The certificates behind anchors of `store` that came as certificates (a `ca_file`, the
    /// system store). The Mozilla set compiled in has anchors only: a name and a key, no
    /// validity.
    certificates: Arc<Vec<RootCert>>,
}

#[derive(Debug, Clone)]
struct RootCert {
    subject: Vec<u8>,
    spki: Vec<u8>,
    facts: CertFacts,
}

impl Roots {
    fn new(store: RootCertStore, certificates: &[CertificateDer<'_>]) -> Roots {
        let certificates = certificates
            .iter()
            .filter_map(|der| {
                let anchor = webpki::anchor_from_trusted_cert(der).ok()?;
                Some(RootCert {
                    subject: anchor.subject.as_ref().to_vec(),
                    spki: anchor.subject_public_key_info.as_ref().to_vec(),
                    facts: CertFacts::inspect(der),
                })
            })
            .collect();
        Roots {
            store: Arc::new(store),
            certificates: Arc::new(certificates),
        }
    }

    /// The certificate behind `anchor`, when vantage holds it.
    pub fn certificate_of(&self, anchor: &TrustAnchor<'_>) -> Option<&CertFacts> {
        self.certificates
            .iter()
            .find(|c| {
                c.subject == anchor.subject.as_ref()
                    && c.spki == anchor.subject_public_key_info.as_ref()
            })
            .map(|c| &c.facts)
    }

    pub(super) fn with(&self, extra: &[CertificateDer<'static>]) -> (Roots, usize) {
        let mut store = (*self.store).clone();
        let (_, unusable) = store.add_parsable_certificates(extra.iter().cloned());
        let mut roots = Roots::new(store, extra);
        let mut certificates = Arc::unwrap_or_clone(roots.certificates);
        certificates.extend(self.certificates.iter().cloned());
        roots.certificates = Arc::new(certificates);
        (roots, unusable)
    }
}

pub(super) fn mozilla_roots() -> Roots {
    let store = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Roots::new(store, &[])
}

/// The OS store, read once per process (a later fix to the store needs a restart).
pub(super) fn system_roots() -> Result<Roots, String> {
    static ROOTS: OnceLock<Result<Roots, String>> = OnceLock::new();
    ROOTS.get_or_init(load_system_roots).clone()
}

fn load_system_roots() -> Result<Roots, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs.iter().cloned());
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(format!(
            "trust: system found no usable certificates in the operating system's store{why}"
        ));
    }
    Ok(Roots::new(store, &found.certs))
}
