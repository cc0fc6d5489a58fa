//! TLS for probes: client configs built once per target, a full handshake on every run, the
//! facts of the presented chain whether or not it verifies, and the mapping of rustls errors to
//! stable failure reasons.
//!
//! The handshake always runs to completion when the server allows it (see `dangerous`), so a
//! bad certificate still yields its chain, version and cipher. Whether the run then fails is the
//! target's choice (`verify`, `skip_hostname_verify`); what `chain_valid` and `hostname_valid`
//! report is never a choice. Nor does the chain's expiry fail a run: `alert_before_expiry` is a
//! warning threshold (`expiry`), and only a `certificate_expiry` assertion fails on it.

pub mod cert;
pub mod config;
mod dangerous;
pub mod dialect;
mod dn;
mod errors;
pub mod expiry;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
mod kx;
pub mod metrics;
mod path;
pub mod report;
mod roots;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, HandshakeKind};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::net::Host;
use crate::net::close::Closable;
use crate::outcome::{Failure, Reason, Trace};
use cert::CertFacts;
use dangerous::{AcceptAnyCertificateAndRecord, Recorded, Refuse};
pub use errors::{REASONS, describe, failure, reason, rustls_error};
use errors::{certificate_failure, handshake_failure};
pub use kx::KeyExchange;
use kx::{client_provider, group_name};
pub use path::{Anchor, VerifiedChain};
pub use roots::provider;
use roots::{Roots, Trusted, mozilla_roots, system_roots};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
pub enum TlsVersion {
    #[serde(rename = "TLSv1.2")]
    Tls12,
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

impl TlsVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }

    fn of(version: rustls::ProtocolVersion) -> Option<TlsVersion> {
        match version {
            rustls::ProtocolVersion::TLSv1_2 => Some(TlsVersion::Tls12),
            rustls::ProtocolVersion::TLSv1_3 => Some(TlsVersion::Tls13),
            _ => None,
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which roots a chain must lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    /// The Mozilla root set compiled into vantage: the same in every container.
    #[default]
    Mozilla,
    /// The operating system's store, read once at start-up.
    System,
}

/// The `tls:` options of a target, validated but with their files not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub verify: bool,
    pub server_name: Option<String>,
    pub skip_hostname_verify: bool,
    pub min_version: TlsVersion,
    pub key_exchange: KeyExchange,
    pub trust: Trust,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<ClientCertFiles>,
    pub alert_before_expiry: Option<Duration>,
    /// Protocols offered through ALPN, most preferred first; empty offers none.
    pub alpn: Vec<Vec<u8>>,
}

impl Default for TlsOptions {
    /// What a `tls:` table means when it sets nothing: verify everything against the Mozilla
    /// roots, SNI from the host, TLS 1.2 or 1.3, an X25519 key share, no client certificate,
    /// no expiry alert.
    fn default() -> Self {
        TlsOptions {
            verify: true,
            server_name: None,
            skip_hostname_verify: false,
            min_version: TlsVersion::Tls12,
            key_exchange: KeyExchange::Classic,
            trust: Trust::Mozilla,
            ca_file: None,
            client_cert: None,
            alert_before_expiry: None,
            alpn: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The option a build error is about, so that the config error points at its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKey {
    ServerName,
    Trust,
    CaFile,
    CertFile,
    KeyFile,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    pub key: OptionKey,
    pub message: String,
}

impl BuildError {
    fn new(key: OptionKey, message: impl Into<String>) -> Self {
        BuildError {
            key,
            message: message.into(),
        }
    }
}

/// One target's TLS client, built once: the verifier and the client config are shared by every
/// run; only the recording verifier is made per handshake.
#[derive(Debug)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    trusted: Arc<Trusted>,
    server_name: Option<ServerName<'static>>,
    pub options: TlsOptions,
}

/// A TLS client and the name it verifies (and sends as SNI) for one host.
#[derive(Debug, Clone)]
pub struct TlsTarget {
    pub client: Arc<TlsClient>,
    pub server_name: ServerName<'static>,
}

/// Reads a file that the options name. The config passes one that reads each file once per load,
/// so that what a target runs with is exactly what its fingerprint saw.
pub type ReadFile<'a> = &'a mut dyn FnMut(&Path) -> std::io::Result<Vec<u8>>;

impl TlsClient {
    pub fn build(options: TlsOptions, read_file: ReadFile) -> Result<TlsClient, BuildError> {
        let server_name = match &options.server_name {
            None => None,
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|_| {
                BuildError::new(
                    OptionKey::ServerName,
                    format!("server_name {name:?} is neither a DNS name nor an IP address"),
                )
            })?),
        };
        let trusted = trusted(options.trust, options.ca_file.as_deref(), read_file)?;
        let versions: &[&rustls::SupportedProtocolVersion] = match options.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(client_provider(options.key_exchange))
            .with_protocol_versions(versions)
            .map_err(|e| BuildError::new(OptionKey::Trust, e.to_string()))?
            .with_webpki_verifier(Arc::clone(&trusted.verifier));
        let mut config = match &options.client_cert {
            None => builder.with_no_client_auth(),
            Some(files) => {
                let chain = read_certificates(&files.cert_file, OptionKey::CertFile, read_file)?;
                let key = read(&files.key_file, OptionKey::KeyFile, read_file).and_then(|pem| {
                    pem_private_key(&pem).map_err(|e| {
                        BuildError::new(
                            OptionKey::KeyFile,
                            format!("{}: {e}", files.key_file.display()),
                        )
                    })
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    BuildError::new(
                        OptionKey::KeyFile,
                        format!(
                            "{} does not fit {}: {e}",
                            files.key_file.display(),
                            files.cert_file.display()
                        ),
                    )
                })?
            }
        };
        // Every run is a full handshake: a resumed session would skip the certificate. rustls
        // already refuses to resume under another verifier (ours is new per run); disabling
        // resumption says so plainly and keeps tickets that could never be used out of memory.
        config.resumption = Resumption::disabled();
        config.alpn_protocols.clone_from(&options.alpn);
        Ok(TlsClient {
            config: Arc::new(config),
            trusted,
            server_name,
            options,
        })
    }

    /// The name to verify and send as SNI when probing `host`: `server_name` if set, else the
    /// host. IP addresses are verified against IP SANs and sent as no SNI at all.
    pub fn target(self: &Arc<Self>, host: &Host) -> Result<TlsTarget, String> {
        match &self.server_name {
            Some(name) => Ok(TlsTarget {
                client: Arc::clone(self),
                server_name: name.clone(),
            }),
            None => self.target_by_host(host),
        }
    }

    /// The name for `host` itself, ignoring `server_name`: for a host that an HTTP redirect
    /// leads to, which the override (meant for the configured host) does not describe.
    pub fn target_by_host(self: &Arc<Self>, host: &Host) -> Result<TlsTarget, String> {
        let server_name = match host {
            Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
            Host::Name(name) => {
                let name = name.strip_suffix('.').unwrap_or(name);
                ServerName::try_from(name.to_string()).map_err(|_| {
                    format!("{name:?} cannot be a TLS server name: set tls.server_name")
                })?
            }
        };
        Ok(TlsTarget {
            client: Arc::clone(self),
            server_name,
        })
    }
}

/// How a handshake ended. On failure the plain stream comes back (when it still exists) so
/// that the caller can close it gently.
pub enum Handshake<S> {
    Done(Box<TlsStream<S>>),
    Failed { failure: Failure, stream: Option<S> },
}

impl TlsTarget {
    /// `check-config`'s words for this TLS: how it verifies, and the name it sends.
    pub fn summary(&self) -> String {
        let options = &self.client.options;
        let verified = if !options.verify {
            " not verified"
        } else if options.skip_hostname_verify {
            " without hostname check"
        } else {
            ""
        };
        format!(", TLS{verified} as {}", self.server_name.to_str())
    }

    /// Runs the handshake, recording its duration in `trace` and what it revealed in `seen`.
    pub async fn handshake<S>(
        &self,
        stream: S,
        deadline: Instant,
        trace: &mut Trace,
        seen: &mut Option<TlsFacts>,
    ) -> Handshake<S>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let options = &self.client.options;
        let refuse = match (options.verify, &options.client_cert) {
            (true, Some(_)) if options.skip_hostname_verify => Refuse::BadChain,
            (true, Some(_)) => Refuse::BadChainOrName,
            _ => Refuse::Nothing,
        };
        let recorder = Arc::new(AcceptAnyCertificateAndRecord::new(
            Arc::clone(&self.client.trusted),
            refuse,
        ));
        let mut config = (*self.client.config).clone();
        config
            .dangerous()
            .set_certificate_verifier(Arc::clone(&recorder) as _);
        let connector = TlsConnector::from(Arc::new(config));
        let started = Instant::now();
        let result = timeout_at(
            deadline,
            connector
                .connect(self.server_name.clone(), stream)
                .into_fallible(),
        )
        .await;
        // Stopped here: what follows (reading the chain's certificates) is our work, not the
        // network's.
        let took = started.elapsed();

        let mut facts = TlsFacts {
            server_name: match &self.server_name {
                ServerName::DnsName(name) => Some(name.as_ref().to_string()),
                _ => None,
            },
            alert_before_expiry: options.alert_before_expiry,
            ..TlsFacts::default()
        };
        let mut refused = false;
        if let Some(recorded) = recorder.recorded() {
            refused = recorded.refused;
            // Our own work on the chain: done here, after the handshake's timer stopped.
            facts.record(recorded, &self.client.trusted.roots);
        }
        let outcome = match result {
            Err(_) => Handshake::Failed {
                failure: Failure::new(
                    Reason::TlsHandshakeTimeout,
                    if facts.chain.is_empty() {
                        "the server accepted the connection but did not answer the TLS ClientHello before the deadline"
                    } else {
                        "the TLS handshake did not finish before the deadline"
                    },
                ),
                stream: None,
            },
            Ok(Err((err, stream))) => {
                let failure = match &facts.verification {
                    // Our own refusal: the recorded verdict says which check failed.
                    Some(v) if refused => v.chain.clone().and(v.hostname.clone()).err(),
                    _ => None,
                };
                Handshake::Failed {
                    failure: failure.unwrap_or_else(|| handshake_failure(&err)),
                    stream: Some(stream),
                }
            }
            Ok(Ok(tls)) => {
                trace.phases.tls = took.into();
                let (_, connection) = tls.get_ref();
                facts.version = connection.protocol_version().and_then(TlsVersion::of);
                facts.cipher = connection
                    .negotiated_cipher_suite()
                    .map(|s| cipher_name(s.suite()));
                facts.alpn = connection
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                facts.key_exchange = connection
                    .negotiated_key_exchange_group()
                    .map(|g| group_name(g.name()));
                facts.hello_retry =
                    connection.handshake_kind() == Some(HandshakeKind::FullWithHelloRetryRequest);
                Handshake::Done(Box::new(tls))
            }
        };
        *seen = Some(facts);
        outcome
    }

    /// Whether the run may go on over this connection: the verdict, when `verify` is on.
    pub fn verdict(&self, facts: &TlsFacts) -> Result<(), Failure> {
        let options = &self.client.options;
        if !options.verify {
            return Ok(());
        }
        let Some(verification) = &facts.verification else {
            return Ok(());
        };
        verification.chain.clone()?;
        if !options.skip_hostname_verify {
            verification.hostname.clone()?;
        }
        Ok(())
    }
}

/// What a TLS handshake revealed; fields stay empty for what it did not get to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// The SNI sent; `None` for IP addresses, which send none.
    pub server_name: Option<String>,
    /// Negotiated protocol and cipher suite; present once the handshake completed.
    pub version: Option<TlsVersion>,
    pub cipher: Option<String>,
    /// The protocol the server chose through ALPN, when one was offered and chosen.
    pub alpn: Option<String>,
    /// The key-exchange group the server chose (`X25519`, `X25519MLKEM768`, ...); present once
    /// the handshake completed.
    pub key_exchange: Option<String>,
    /// The server asked for another key share (a HelloRetryRequest): it wanted a group that the
    /// first ClientHello listed without a share, and the handshake took one more round trip.
    pub hello_retry: bool,
    /// The presented chain, leaf first.
    pub chain: Vec<CertFacts>,
    /// Present whenever a certificate arrived.
    pub verification: Option<Verification>,
    /// The path that verification took, when the chain verifies.
    pub verified: Option<Box<VerifiedChain>>,
    /// The target's warning threshold for the chain's expiry (see `expiry`).
    pub alert_before_expiry: Option<Duration>,
}

impl TlsFacts {
    /// Takes in what the verifier recorded of the presented chain: each certificate's facts,
    /// the verdicts, and the path that verified over `roots` (for the report and the verified
    /// chain's expiry).
    fn record(&mut self, recorded: Recorded, roots: &Roots) {
        self.chain = recorded
            .chain
            .iter()
            .map(|der| CertFacts::inspect(der))
            .collect();
        if recorded.chain_verdict.is_ok()
            && let Some((leaf, intermediates)) = recorded.chain.split_first()
        {
            self.verified =
                path::verified_chain(roots, leaf, intermediates, recorded.now).map(Box::new);
        }
        self.verification = Some(Verification {
            chain: recorded.chain_verdict.map_err(|e| certificate_failure(&e)),
            hostname: recorded
                .hostname_verdict
                .map_err(|e| certificate_failure(&e)),
        });
    }
}

/// The truth about the presented chain, whatever `verify` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// The chain verifies to a trusted root.
    pub chain: Result<(), Failure>,
    /// The leaf is valid for the server name.
    pub hostname: Result<(), Failure>,
}

pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// IANA names (`TLS_AES_128_GCM_SHA256`), as openssl and Go print them; rustls prefixes its
/// TLS 1.3 suites with `TLS13_`.
fn cipher_name(suite: rustls::CipherSuite) -> String {
    match suite.as_str() {
        Some(name) => match name.strip_prefix("TLS13_") {
            Some(rest) => format!("TLS_{rest}"),
            None => name.to_string(),
        },
        None => format!("0x{:04x}", u16::from(suite)),
    }
}

/// The trust for a choice plus extra roots. Without extra roots it is built once per process
/// and shared: the root sets are large and the same for every target.
fn trusted(
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

fn read(path: &Path, key: OptionKey, read_file: ReadFile) -> Result<Vec<u8>, BuildError> {
    read_file(path)
        .map_err(|e| BuildError::new(key, format!("cannot read {}: {e}", path.display())))
}

fn read_certificates(
    path: &Path,
    key: OptionKey,
    read_file: ReadFile,
) -> Result<Vec<CertificateDer<'static>>, BuildError> {
    pem_certificates(&read(path, key, read_file)?)
        .map_err(|e| BuildError::new(key, format!("{}: {e}", path.display())))
}

/// The private key in `pem`.
pub fn pem_private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => "no PEM private key in it".to_string(),
        e => pem_problem(&e),
    })
}

/// What is wrong with PEM text, never quoting it: a file whose line breaks were lost reads as
/// one long BEGIN line, which the parser's own error would repeat whole, a private key in it
/// included.
fn pem_problem(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => {
            "a BEGIN line without its END line (were the line breaks lost?)"
        }
        pem::Error::IllegalSectionStart { .. } => "a malformed BEGIN line",
        pem::Error::Base64Decode(_) => "not valid base64 between a BEGIN and an END line",
        _ => "not valid PEM",
    }
    .to_string()
}

/// The certificates in `pem`, at least one.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_problem(&e))?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

/// A TLS stream closes with close_notify first, and its errors can carry alerts.
impl Closable for Box<TlsStream<TcpStream>> {
    fn tls_over(&mut self) -> Option<&mut TcpStream> {
        Some(self.get_mut().0)
    }

    fn failure(err: &std::io::Error, doing: &str) -> Failure {
        errors::failure(err, doing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_names_are_iana_names() {
        assert_eq!(
            cipher_name(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384),
            "TLS_AES_256_GCM_SHA384"
        );
        assert_eq!(
            cipher_name(rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
    }
}
