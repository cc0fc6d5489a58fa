//! The rustls floor: the CPU per handshake of a minimal rustls client in this process, the
//! least any rustls prober can pay, to set vantage's TLS probe against.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use crate::certs::{Chain, SERVER_NAME};
use crate::report::Load;
use crate::{MAX_OPERATIONS, address, procs};

/// How the floor's client ends a connection.
#[derive(Clone, Copy)]
pub enum Close {
    /// close_notify and FIN, then drop: the least work, though the server's close_notify (and
    /// any session ticket) may then meet a closed socket and a reset.
    Abrupt,
    /// close_notify and FIN, then read until the server's close_notify and its FIN, as vantage
    /// does on every connection: the same work vantage's close does, so the ratio is fair.
    Gentle,
}

/// How long the gentle close waits for the server's FIN, as vantage's close grace.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// This process's CPU per handshake of a minimal tokio-rustls client (aws-lc-rs, the same
/// provider and roots as vantage, no resumption): connect, handshake, close as `close` says,
/// one at a time, while nothing else runs in this process.
pub async fn rustls(
    chain: &Chain,
    port: u16,
    window: Duration,
    close: Close,
) -> Result<Load, String> {
    let ca = CertificateDer::from_pem_file(&chain.ca).map_err(|e| e.to_string())?;
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(|e| e.to_string())?;
    let mut config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.resumption = Resumption::disabled();
    let connector = TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(SERVER_NAME).map_err(|e| e.to_string())?;
    let handshake = |i: usize| {
        let (connector, name) = (connector.clone(), name.clone());
        async move {
            let tcp = TcpStream::connect((address(i), port))
                .await
                .map_err(|e| e.to_string())?;
            let mut tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            tls.shutdown().await.map_err(|e| e.to_string())?;
            if let Close::Gentle = close {
                let drain = async {
                    let mut scratch = [0u8; 4096];
                    // Through TLS to the server's close_notify (a peer closing TCP without it
                    // ends the stream as well), then on the socket to its FIN.
                    while !matches!(tls.read(&mut scratch).await, Ok(0) | Err(_)) {}
                    let tcp = tls.get_mut().0;
                    while !matches!(tcp.read(&mut scratch).await, Ok(0) | Err(_)) {}
                };
                timeout(CLOSE_GRACE, drain)
                    .await
                    .map_err(|_| "the server did not close within 1 s".to_string())?;
            }
            Ok::<_, String>(())
        }
    };
    for i in 0..200 {
        handshake(i).await?;
    }
    let (cpu0, t0) = (procs::own_cpu_seconds(), Instant::now());
    let mut count = 0u64;
    while t0.elapsed() < window && count < MAX_OPERATIONS {
        handshake(count as usize).await?;
        count += 1;
    }
    Ok(Load {
        operations: count,
        cpu_seconds: procs::own_cpu_seconds() - cpu0,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
