//! The command line, in Prometheus' conventions: dotted long flags, `--flag=value`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::duration;
use crate::logging::{LogFormat, LogLevel};
use crate::probe::tcp::starttls::Dialect;
use crate::shard::Shard;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const REVISION: &str = env!("VANTAGE_REVISION");

#[derive(Debug, Parser)]
#[command(
    name = "vantage",
    // A flag given twice takes the last value, so extra arguments (the Helm chart's extraArgs)
    // can override the ones a wrapper always passes.
    args_override_self = true,
    version = concat!(env!("CARGO_PKG_VERSION"), " (revision ", env!("VANTAGE_REVISION"), ")"),
    about = "Availability prober and Prometheus exporter"
)]
pub struct Cli {
    /// Config file
    #[arg(
        long = "config.file",
        value_name = "PATH",
        default_value = "exporter.yml",
        global = true
    )]
    pub config_file: PathBuf,

    /// Address to serve /metrics on; ":PORT" listens on every interface; "" serves nothing
    /// (an instance that only pushes, with remote_write)
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        default_value = ":9875"
    )]
    pub listen_address: String,

    /// Users (bcrypt hashes) and headers for every endpoint, in the Prometheus exporter-toolkit's
    /// web config format
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,

    /// Serve POST /-/reload (SIGHUP and the config file's watch reload without it)
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,

    /// Serve GET /probe?module=M&target=T, blackbox_exporter's endpoint, for modules that have
    /// an allow list
    #[arg(long = "web.enable-probe")]
    pub enable_probe: bool,

    /// Taken from the scrape's X-Prometheus-Scrape-Timeout-Seconds to bound a /probe run, so
    /// that the answer arrives before the scraper gives up
    #[arg(
        long = "probe.timeout-offset",
        value_name = "DURATION",
        value_parser = duration::parse,
        default_value = "500ms"
    )]
    pub probe_timeout_offset: Duration,

    /// This instance's location label, overriding `location` in the config
    #[arg(
        long = "location",
        env = "VANTAGE_LOCATION",
        value_name = "NAME",
        global = true
    )]
    pub location: Option<String>,

    /// Probe only this shard's targets, picked by a stable hash of each target's name: INDEX/COUNT,
    /// counting from 0 (one config, COUNT replicas)
    #[arg(
        long = "shard",
        value_name = "INDEX/COUNT",
        value_parser = Shard::parse,
        global = true
    )]
    pub shard: Option<Shard>,

    /// Take the shard index from the ordinal that ends the hostname, as a StatefulSet pod's does
    /// (vantage-2 is shard 2); needs --shard.count
    #[arg(long = "shard.from-hostname", global = true)]
    pub shard_from_hostname: bool,

    /// The number of shards, with --shard.from-hostname
    #[arg(
        long = "shard.count",
        value_name = "COUNT",
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub shard_count: Option<u32>,

    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info, global = true)]
    pub log_level: LogLevel,

    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Logfmt, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The shard flags' combination. Checked here rather than by clap's `requires` and
    /// `conflicts_with`, which judge global flags separately on each side of the subcommand.
    pub fn check_shard_flags(&self) -> Result<(), &'static str> {
        match (
            self.shard.is_some(),
            self.shard_from_hostname,
            self.shard_count.is_some(),
        ) {
            (false, false, false) | (true, false, false) | (false, true, true) => Ok(()),
            (true, _, _) => Err(
                "--shard=INDEX/COUNT cannot be used with --shard.from-hostname or --shard.count",
            ),
            (false, true, false) => Err("--shard.from-hostname needs --shard.count=COUNT"),
            (false, false, true) => Err(
                "--shard.count goes with --shard.from-hostname (--shard=INDEX/COUNT carries its own count)",
            ),
        }
    }

    /// This instance's shard, from `--shard` or from the hostname and `--shard.count`.
    pub fn shard(&self) -> Result<Shard, String> {
        self.check_shard_flags()?;
        match (self.shard, self.shard_count) {
            (Some(shard), _) => Ok(shard),
            (None, Some(count)) => Shard::from_hostname(&Shard::hostname()?, count),
            (None, None) => Ok(Shard::WHOLE),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config file and print a summary; exit 1 naming file:line:column on error
    #[command(name = "check-config")]
    CheckConfig {
        /// The file to check (default: --config.file)
        path: Option<PathBuf>,
    },
    /// Run one probe now and print a report; exit 0 on success, 1 on failure, 2 if it cannot run
    Probe(ProbeArgs),
    /// Convert a blackbox_exporter config (and the static targets of the Prometheus config
    /// that scrapes it) into an exporter.yml on stdout; what is not converted goes to stderr
    /// with its line. Exit 0 when everything converted, 3 when something did not, 2 when an
    /// input cannot be read or is not such a config
    #[command(name = "import-blackbox")]
    ImportBlackbox {
        /// blackbox_exporter's config (its `modules`)
        blackbox: PathBuf,
        /// The Prometheus config whose /probe jobs list the targets
        prometheus: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// HOST:PORT or http(s) URL to probe; with --name, the named check is pointed at this
    /// address instead
    pub target: Option<String>,

    /// Probe type [default: http for a URL, else tcp]
    #[arg(long = "type", value_enum)]
    pub kind: Option<ProbeType>,

    /// Run the check of this target from the config file, with all of its settings
    #[arg(long)]
    pub name: Option<String>,

    /// Upgrade HOST:PORT to TLS with this protocol's STARTTLS dialogue: smtp, imap, pop3, ftp,
    /// postgres, ldap or xmpp
    #[arg(long, value_name = "DIALECT", value_parser = Dialect::parse)]
    pub starttls: Option<Dialect>,

    /// Deadline of the run (default: 5s, or the named target's timeout)
    #[arg(long, value_parser = duration::parse)]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeType {
    Tcp,
    Tls,
    Http,
    Icmp,
    Dns,
}
