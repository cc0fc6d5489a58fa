//! The web config's `tls_server_config`: the endpoints served over TLS with rustls, options
//! named and defaulted as in the Prometheus exporter-toolkit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use serde::Deserialize;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::tls::provider;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    cert: Option<String>,
    cert_file: Option<String>,
    key: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    /// Accepted for files written for the toolkit: rustls always prefers its own order.
    #[serde(rename = "prefer_server_cipher_suites")]
    _prefer_server_cipher_suites: Option<bool>,
}

impl RawTls {
    /// Whether the section names no certificate: as in the toolkit, it then means no TLS.
    pub fn is_unset(&self) -> bool {
        [&self.cert, &self.cert_file, &self.key, &self.key_file]
            .iter()
            .all(|v| non_empty(v.as_deref()).is_none())
    }
}

/// TLS for the endpoints, built from the files it names.
#[derive(Debug)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    /// `client_allowed_sans`: a verified client certificate must carry one of these.
    pub allowed_sans: Vec<String>,
    /// The files it was built from, so that a change to one of them rebuilds it.
    pub files: Vec<PathBuf>,
}

/// Builds the server's TLS from `raw`, offering HTTP/2 through ALPN with `http2`; relative
/// paths are relative to `dir`, the web config's folder, as in the toolkit.
pub fn build(raw: &RawTls, dir: &Path, http2: bool) -> Result<ServerTls, String> {
    let (Some(cert), Some(key)) = (
        Pem::of(&raw.cert, &raw.cert_file, "cert")?,
        Pem::of(&raw.key, &raw.key_file, "key")?,
    ) else {
        return Err(
            "tls_server_config: a certificate (cert_file or cert) and its key (key_file or \
             key) are both needed"
                .into(),
        );
    };
    // An empty value means the default, as in the toolkit (Go's zero values).
    let auth = non_empty(raw.client_auth_type.as_deref()).unwrap_or("NoClientCert");
    let verified = match auth {
        "NoClientCert" => None,
        "VerifyClientCertIfGiven" => Some(true),
        "RequireAndVerifyClientCert" => Some(false),
        "RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert" => {
            return Err(format!(
                "tls_server_config.client_auth_type: {auth} takes client certificates without \
                 verifying them, which vantage does not do: use VerifyClientCertIfGiven or \
                 RequireAndVerifyClientCert with a client_ca_file"
            ));
        }
        other => {
            return Err(format!(
                "tls_server_config.client_auth_type: unknown {other:?}: NoClientCert, \
                 VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ));
        }
    };
    let mut files = Vec::new();
    let chain = cert.read(dir, &mut files)?;
    let key = key.read(dir, &mut files)?;
    let client_ca = match Pem::of(&raw.client_ca, &raw.client_ca_file, "client_ca")? {
        Some(pem) => Some(pem.read(dir, &mut files)?),
        None => None,
    };
    let chain =
        crate::tls::pem_certificates(&chain.text).map_err(|e| format!("{}: {e}", chain.from))?;
    let key = crate::tls::pem_private_key(&key.text).map_err(|e| format!("{}: {e}", key.from))?;
    let provider = Arc::new(narrowed(
        &provider(),
        raw.cipher_suites.as_deref().filter(|s| !s.is_empty()),
        raw.curve_preferences.as_deref().filter(|c| !c.is_empty()),
    )?);
    let versions = versions(
        non_empty(raw.min_version.as_deref()),
        non_empty(raw.max_version.as_deref()),
    )?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let builder = match (verified, client_ca) {
        (None, None) => builder.with_no_client_auth(),
        (None, Some(_)) => {
            return Err(
                "tls_server_config.client_ca: needs a client_auth_type that verifies".into(),
            );
        }
        (Some(_), None) => {
            return Err(format!(
                "tls_server_config.client_auth_type: {auth} needs a client_ca_file (or \
                 client_ca)"
            ));
        }
        (Some(optional), Some(client_ca)) => {
            let from = &client_ca.from;
            let mut roots = RootCertStore::empty();
            for cert in
                crate::tls::pem_certificates(&client_ca.text).map_err(|e| format!("{from}: {e}"))?
            {
                roots.add(cert).map_err(|e| format!("{from}: {e}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("tls_server_config.client_ca: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("tls_server_config: the key does not fit the certificate: {e}"))?;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let allowed_sans = raw.client_allowed_sans.clone().unwrap_or_default();
    if !allowed_sans.is_empty() && verified.is_none() {
        return Err(
            "tls_server_config.client_allowed_sans: needs verified client certificates".into(),
        );
    }
    Ok(ServerTls {
        config: Arc::new(config),
        allowed_sans,
        files,
    })
}

impl ServerTls {
    /// Whether a client's verified certificate may connect: with `client_allowed_sans`, one
    /// of its subject alternative names (DNS, IP, email or URI) must be listed. A client
    /// without a certificate (`VerifyClientCertIfGiven`) passes only when no list is set.
    pub fn allows(&self, client: Option<&CertificateDer<'_>>) -> bool {
        if self.allowed_sans.is_empty() {
            return true;
        }
        let Some(Ok((_, cert))) = client.map(|c| X509Certificate::from_der(c.as_ref())) else {
            return false;
        };
        let Ok(Some(sans)) = cert.subject_alternative_name() else {
            return false;
        };
        sans.value.general_names.iter().any(|name| {
            let text = match name {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    (*s).to_string()
                }
                GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        std::net::IpAddr::from(v4).to_string()
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        std::net::IpAddr::from(v6).to_string()
                    } else {
                        return false;
                    }
                }
                _ => return false,
            };
            self.allowed_sans.contains(&text)
        })
    }
}

/// Where a PEM value comes from: inline in the web config (`cert`) or a file it names
/// (`cert_file`), one or the other, as in the toolkit; `key` is the option's name.
enum Pem<'a> {
    Inline { key: &'static str, text: &'a str },
    File { key: &'static str, path: &'a str },
}

impl<'a> Pem<'a> {
    /// The source of option `key`, if either form is set.
    fn of(
        inline: &'a Option<String>,
        file: &'a Option<String>,
        key: &'static str,
    ) -> Result<Option<Self>, String> {
        match (non_empty(inline.as_deref()), non_empty(file.as_deref())) {
            (Some(_), Some(_)) => Err(format!(
                "tls_server_config: {key} and {key}_file are both set: one or the other"
            )),
            (Some(text), None) => Ok(Some(Pem::Inline { key, text })),
            (None, Some(path)) => Ok(Some(Pem::File { key, path })),
            (None, None) => Ok(None),
        }
    }

    /// The PEM text and where it came from, for errors (never quoting it: a key is secret);
    /// a file it came from is added to `files`, so that a change to it is seen.
    fn read(self, dir: &Path, files: &mut Vec<PathBuf>) -> Result<PemText, String> {
        match self {
            Pem::Inline { key, text } => Ok(PemText {
                text: text.as_bytes().to_vec(),
                from: format!("tls_server_config.{key}"),
            }),
            Pem::File { key, path } => {
                let path = dir.join(path);
                let from = format!("tls_server_config.{key}_file ({})", path.display());
                let text = crate::build::file::read(&path, crate::build::file::NAMED_FILE)
                    .map_err(|e| format!("{from}: cannot read it: {e}"))?;
                files.push(path);
                Ok(PemText { text, from })
            }
        }
    }
}

/// PEM text as read, and where from: `tls_server_config.key` or `tls_server_config.key_file
/// (PATH)`.
struct PemText {
    text: Vec<u8>,
    from: String,
}

/// The TLS versions from `min` to `max`, in the toolkit's names (TLS10 and TLS11 are refused:
/// rustls does not speak them). The toolkit's default minimum is TLS 1.2.
fn versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let rank = |v: Option<&str>, default: u8, key: &str| match v {
        None => Ok(default),
        Some("TLS12") => Ok(2),
        Some("TLS13") => Ok(3),
        Some(other @ ("TLS10" | "TLS11")) => Err(format!(
            "tls_server_config.{key}: {other} is not offered: TLS 1.0 and 1.1 are broken"
        )),
        Some(other) => Err(format!(
            "tls_server_config.{key}: unknown {other:?}: TLS12 or TLS13"
        )),
    };
    let (min, max) = (rank(min, 2, "min_version")?, rank(max, 3, "max_version")?);
    if min > max {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    Ok([(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
        .into_iter()
        .filter(|(rank, _)| (min..=max).contains(rank))
        .map(|(_, version)| version)
        .collect())
}

/// rustls's name of a cipher suite from Go's, which also knows the ChaCha20 ones without their
/// hash and the TLS 1.3 ones without `TLS13_`.
fn rustls_suite_name(go: &str) -> String {
    if go.ends_with("CHACHA20_POLY1305") {
        format!("{go}_SHA256")
    } else if ["TLS_AES_", "TLS_CHACHA20_"]
        .iter()
        .any(|p| go.starts_with(p))
    {
        go.replacen("TLS_", "TLS13_", 1)
    } else {
        go.to_string()
    }
}

/// `value`, unless it is empty: the toolkit reads an empty string as not set.
fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

/// The provider with only the listed cipher suites and key-exchange groups, in the toolkit's
/// (Go's) names. TLS 1.3's suites are not configurable in Go, so they are always kept.
fn narrowed(
    provider: &CryptoProvider,
    suites: Option<&[String]>,
    curves: Option<&[String]>,
) -> Result<CryptoProvider, String> {
    let mut narrowed = provider.clone();
    if let Some(suites) = suites {
        let names: Vec<String> = suites.iter().map(|n| rustls_suite_name(n)).collect();
        for (name, rustls_name) in suites.iter().zip(&names) {
            if !provider
                .cipher_suites
                .iter()
                .any(|s| format!("{:?}", s.suite()) == *rustls_name)
            {
                return Err(format!(
                    "tls_server_config.cipher_suites: {name} is not one vantage offers"
                ));
            }
        }
        narrowed.cipher_suites.retain(|s| {
            s.version() == &rustls::version::TLS13 || names.contains(&format!("{:?}", s.suite()))
        });
    }
    if let Some(curves) = curves {
        let wanted: Vec<rustls::NamedGroup> = curves
            .iter()
            .map(|name| match name.as_str() {
                "X25519" => Ok(rustls::NamedGroup::X25519),
                "CurveP256" => Ok(rustls::NamedGroup::secp256r1),
                "CurveP384" => Ok(rustls::NamedGroup::secp384r1),
                "CurveP521" => Ok(rustls::NamedGroup::secp521r1),
                other => Err(format!(
                    "tls_server_config.curve_preferences: unknown {other:?}: X25519, CurveP256, \
                     CurveP384 or CurveP521"
                )),
            })
            .collect::<Result<_, _>>()?;
        narrowed.kx_groups = wanted
            .iter()
            .filter_map(|g| provider.kx_groups.iter().find(|k| k.name() == *g).copied())
            .collect();
        if narrowed.kx_groups.is_empty() {
            return Err("tls_server_config.curve_preferences: none of them is offered".into());
        }
    }
    Ok(narrowed)
}
