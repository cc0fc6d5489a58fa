//! The roots a target's chains must lead to (Mozilla's set, the system store, a `ca_file`), the
//! verifier built over them, and the root certificates vantage holds behind some of them: the
//! verified chain's expiry counts a root's own validity when its certificate is at hand.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, TrustAnchor};

use super::cert::CertFacts;
use super::{BuildError, OptionKey, ReadFile, Trust, provider, read_certificates};

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

    fn with(&self, extra: &[CertificateDer<'static>]) -> (Roots, usize) {
        let mut store = (*self.store).clone();
        let (_, unusable) = store.add_parsable_certificates(extra.iter().cloned());
        let mut roots = Roots::new(store, extra);
        let mut certificates = Arc::unwrap_or_clone(roots.certificates);
        certificates.extend(self.certificates.iter().cloned());
        roots.certificates = Arc::new(certificates);
        (roots, unusable)
    }
}

/// The trust for a choice plus extra roots. Without extra roots it is built once per process
/// and shared: the root sets are large and the same for every target.
pub(super) fn trusted(
    trust: Trust,
    ca_file: Option<&Path>,
    read_file: ReadFile,
) -> Result<Arc<Trusted>, BuildError> {
    static MOZILLA: OnceLock<Arc<Trusted>> = OnceLock::new();
    static SYSTEM: OnceLock<Result<Arc<Trusted>, String>> = OnceLock::new();
    let build = |roots: Roots| {
        WebPkiServerVerifier::builder_with_provider(Arc::clone(&roots.store), provider())
            .build()
            .map(|verifier| Arc::new(Trusted { verifier, roots }))
            .map_err(|e| format!("cannot build a certificate verifier: {e}"))
    };
    let Some(ca_file) = ca_file else {
        return match trust {
            Trust::Mozilla => Ok(Arc::clone(MOZILLA.get_or_init(|| {
                build(mozilla_roots()).expect("the Mozilla root set is never empty")
            }))),
            Trust::System => SYSTEM
                .get_or_init(|| system_roots().and_then(build))
                .clone()
                .map_err(|e| BuildError::new(OptionKey::Trust, e)),
        };
    };
    let base = match trust {
        Trust::Mozilla => mozilla_roots(),
        Trust::System => system_roots().map_err(|e| BuildError::new(OptionKey::Trust, e))?,
    };
    let extra = read_certificates(ca_file, OptionKey::CaFile, read_file)?;
    let (roots, unusable) = base.with(&extra);
    if unusable > 0 {
        return Err(BuildError::new(
            OptionKey::CaFile,
            format!(
                "{unusable} certificate(s) in {} cannot be used as trust roots",
                ca_file.display()
            ),
        ));
    }
    build(roots).map_err(|e| BuildError::new(OptionKey::CaFile, e))
}

fn mozilla_roots() -> Roots {
    let store = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Roots::new(store, &[])
}

/// The OS store, read once per process (a later fix to the store needs a restart).
fn system_roots() -> Result<Roots, String> {
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
