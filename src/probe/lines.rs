//! Report lines that several probe types print: where a connection went and how long getting
//! there took (tcp, icmp, and every http request).
//!
//! Here rather than in one type's folder so that no type imports another only for this, and
//! below the registry: it imports nothing of `probe` itself.

use std::fmt;

use crate::duration::timing;
use crate::net::Host;
use crate::outcome::Phases;

/// Where the connection went and how long getting there took.
/// `address` is the socket address, or for icmp (which has no port) the IP.
pub fn connection(
    line: &mut impl FnMut(&str, String),
    host: &Host,
    address: Option<impl fmt::Display>,
    phases: &Phases,
) {
    match (address, phases.dns.get()) {
        (Some(addr), Some(lookup)) => line(
            "address",
            format!("{host} resolved to {addr} in {}", timing(lookup)),
        ),
        (Some(addr), None) => line("address", format!("{addr} (IP literal, no lookup)")),
        (None, _) => {}
    }
    if let Some(connect) = phases.connect.get() {
        line("connect", timing(connect));
    }
}
