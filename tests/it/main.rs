//! Integration tests: one binary, real sockets on loopback, the real vantage executable.

mod cli;
mod exporter;
mod gentle;
mod hostile;
mod netns;
mod support;
mod tcp;
