//! What the dialogues share: the names they announce (`Names`), and the two failures of a
//! dialogue, a server that refuses the upgrade (`unsupported`) and one that answers what we
//! did not expect (`mismatch`).

use std::net::IpAddr;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::outcome::{Failure, Reason};

/// The names the dialogues announce: ours for SMTP's EHLO, the server's for XMPP's stream.
pub(super) struct Names {
    /// An address literal of our end of the connection, always a valid EHLO argument (RFC 5321
    /// 4.1.3), where a host name could be one the server rejects.
    pub(super) client: String,
    /// The XMPP domain: the TLS server name (`tls.server_name`, else the host).
    pub(super) domain: String,
}

impl Names {
    pub(super) fn of(stream: &TcpStream, server_name: &ServerName<'_>) -> Names {
        let client = match stream.local_addr().map(|a| a.ip()) {
            Ok(IpAddr::V4(ip)) => format!("[{ip}]"),
            Ok(IpAddr::V6(ip)) => format!("[IPv6:{ip}]"),
            Err(_) => "[127.0.0.1]".to_string(),
        };
        let domain = match server_name {
            ServerName::DnsName(name) => name.as_ref().to_string(),
            ServerName::IpAddress(ip) => match IpAddr::from(*ip) {
                IpAddr::V4(ip) => ip.to_string(),
                // An IPv6 domainpart is bracketed (RFC 7622 3.2).
                IpAddr::V6(ip) => format!("[{ip}]"),
            },
            other => format!("{other:?}"),
        };
        Names { client, domain }
    }
}

pub(super) fn unsupported(detail: impl Into<String>) -> Failure {
    Failure::new(Reason::StarttlsUnsupported, detail)
}

pub(super) fn mismatch(detail: impl Into<String>) -> Failure {
    Failure::new(Reason::ExpectMismatch, detail)
}
