//! Logs on stderr, as logfmt (the Prometheus ecosystem's default) or JSON.

use clap::ValueEnum;
use tracing::Level;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

pub fn init(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Debug => Level::DEBUG,
        LogLevel::Info => Level::INFO,
        LogLevel::Warn => Level::WARN,
        LogLevel::Error => Level::ERROR,
    };
    match format {
        LogFormat::Logfmt => tracing_logfmt::builder()
            .subscriber_builder()
            .with_writer(std::io::stderr)
            .with_max_level(level)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_max_level(level)
            .init(),
    }
}
