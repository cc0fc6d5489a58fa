//! Integration tests: one binary, real sockets on loopback, the real vantage executable.

mod cli;
mod exporter;
mod gentle;
mod hostile;
mod http;
mod interop;
mod netns;
mod pki;
mod support;
mod tcp;
mod tls;
