//! The network beneath every probe: addresses, resolution, timed connects, the gentle close and
//! a small DNS client. Nothing here knows of TLS or of probe types; the TLS layer plugs into
//! the close through [`close::Closable`].
//!
//! The children import one another by their own paths, never through this module's
//! re-exports, so that the files form no cycle.

pub mod addr;
pub mod close;
pub mod dns;
pub mod resolve;
pub mod socket;

pub use addr::{
    Host, IpVersion, check_destination, ip_hash, ip_protocol, parse_dns_server, parse_host_port,
};
pub use resolve::{Resolved, locate, open, resolve, resolve_every};
pub use socket::{CONNECT_REASONS, classify, connect, failure};
