//! Integration tests: one binary, real sockets on loopback, the real vantage executable.

mod addresses;
mod alerting;
mod architecture;
mod chain;
mod cli;
mod container;
mod dns;
mod exporter;
mod gentle;
mod hostile;
mod http;
mod icmp;
mod interop;
mod kubernetes;
mod netns;
mod pki;
mod prometheus;
mod queries;
mod reload;
mod servers;
mod shard;
mod starttls;
mod support;
mod tcp;
mod timers;
mod tls;
