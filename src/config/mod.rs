//! The validated config: `exporter.yml` parsed (see `raw`) and then checked and built, in one
//! function, into targets that are ready to run. Runtime code never parses a string.
//!
//! Validation collects every mistake it can find rather than stopping at the first, and each
//! names file, line, column and key path.

mod error;
mod raw;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ::http::uri::Authority;
use ::http::{HeaderName, HeaderValue, Method};
use bytes::Bytes;
use regex::bytes::RegexBuilder;
use serde_saphyr::Location;

pub use error::{ConfigError, ConfigErrors};
use raw::{
    AssertionKind, Kind, RawAssertion, RawConfig, RawDefaults, RawDns, RawHeaderValue, RawHttp,
    RawIcmp, RawTarget, RawTcp, RawTls, S,
};

use crate::duration::{self, ConfigDuration};
use crate::net::dns;
use crate::net::{self, Host, IpVersion};
use crate::probe::dns::{DnsProbe, parse_rcode};
use crate::probe::http::{self, Header, HttpProbe, Scheme, StatusCodes, Url};
use crate::probe::icmp::IcmpProbe;
use crate::probe::tcp::starttls::Dialect;
use crate::probe::tcp::{Step, TcpProbe};
use crate::probe::{Assertion, Probe, RunPolicy};
use crate::shard::Shard;
use crate::tls::{ClientCertFiles, OptionKey, TlsClient, TlsOptions, TlsTarget};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};

pub const DEFAULT_MAX_CONCURRENT_PROBES: usize = 512;
/// Far above any file-descriptor limit; it only keeps absurd values out of the semaphore.
const MAX_CONCURRENT_PROBES_LIMIT: usize = 1_000_000;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
const DEFAULT_BODY_SIZE_LIMIT: u64 = 1 << 20;
/// Every concurrent HTTP run may hold this much for its body regexes.
const MAX_BODY_SIZE_LIMIT: u64 = 64 << 20;
/// Headers that carry credentials even when written inline: kept from other hosts and logs.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];
/// Headers that describe the connection or the framing, which vantage decides.
const OWN_HEADERS: [&str; 6] = [
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "upgrade",
    "keep-alive",
];

/// Label names that probe series use themselves; a static label must not shadow one.
const RESERVED_LABELS: [&str; 20] = [
    "name",
    "probe",
    "target",
    "location",
    "reason",
    "step",
    "result",
    "stat",
    "version",
    "cipher",
    "cert_index",
    "subject",
    "issuer",
    "serial",
    "dns_names",
    "sha256",
    "rcode",
    "assertion",
    "le",
    "quantile",
];

/// A config that passed validation.
#[derive(Debug)]
pub struct Config {
    /// This instance's vantage point, after `--location` / `VANTAGE_LOCATION`.
    pub location: String,
    pub max_concurrent_probes: usize,
    /// The targets this instance runs.
    pub targets: Vec<Arc<Target>>,
    /// Names of targets whose `locations` do not include this instance's.
    pub elsewhere: Vec<String>,
    /// The shard this instance is (`--shard`), and how many of this location's targets the
    /// other shards probe.
    pub shard: Shard,
    pub other_shards: usize,
}

/// One configured check.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub probe: Probe,
    pub policy: RunPolicy,
    pub interval: Duration,
    pub interval_on_failure: Option<Duration>,
    pub assertions: Vec<Assertion>,
    /// The identity of every series of this target: name, probe, target, location, static labels.
    pub labels: Vec<(String, String)>,
    /// Digest of everything the target was built from: its entry as parsed (comments, layout
    /// and position in the file do not count), the defaults, labels and location it inherits,
    /// and the content of every file it reads. A reload restarts a target only when this
    /// changes. Zero for targets from the command line.
    pub fingerprint: u64,
}

impl Target {
    /// A target from the command line (`vantage probe HOST:PORT [--type=tls]`): a bare TCP
    /// connect, or a TLS handshake with the default options (verified, SNI from the host).
    pub fn adhoc_tcp(
        address: &str,
        tls: bool,
        starttls: Option<Dialect>,
        timeout: Duration,
        location: &str,
    ) -> Result<Target, String> {
        let (host, port) = parse_address(address)?;
        let tls = if tls || starttls.is_some() {
            let client = TlsClient::build(TlsOptions::default(), &mut |p| std::fs::read(p))
                .map_err(|e| e.message)?;
            Some(Arc::new(client).target(&host)?)
        } else {
            None
        };
        let probe = Probe::Tcp(TcpProbe {
            host,
            port,
            ip_version: IpVersion::Auto,
            resolver: None,
            steps: Vec::new(),
            hold: Duration::ZERO,
            tls,
            starttls,
        });
        Ok(Target::adhoc(probe, timeout, location))
    }

    /// A target from the command line (`vantage probe URL`): a GET with the default options,
    /// following redirects, expecting 200-299.
    pub fn adhoc_http(text: &str, timeout: Duration, location: &str) -> Result<Target, String> {
        let url = Url::parse(text.trim())?;
        let options = TlsOptions {
            alpn: http::alpn(false),
            ..TlsOptions::default()
        };
        let client =
            Arc::new(TlsClient::build(options, &mut |p| std::fs::read(p)).map_err(|e| e.message)?);
        let probe = Probe::Http(Box::new(HttpProbe {
            tls: client.target(&url.host)?,
            tls_elsewhere: client,
            url,
            written: text.trim().to_string(),
            method: Method::GET,
            headers: Vec::new(),
            body: Bytes::new(),
            valid_status_codes: vec![StatusCodes::SUCCESS],
            body_regex: None,
            body_not_regex: None,
            body_size_limit: DEFAULT_BODY_SIZE_LIMIT,
            follow_redirects: true,
            ip_version: IpVersion::Auto,
            resolver: None,
        }));
        Ok(Target::adhoc(probe, timeout, location))
    }

    /// `vantage probe HOST --type=icmp`: three echoes, failing only when none returns.
    pub fn adhoc_icmp(host: &str, timeout: Duration, location: &str) -> Result<Target, String> {
        let probe = Probe::Icmp(IcmpProbe {
            host: Host::parse(host.trim())?,
            ip_version: IpVersion::Auto,
            resolver: None,
            count: 3,
            payload_size: 56,
            max_loss_ratio: 1.0,
        });
        Ok(Target::adhoc(probe, timeout, location))
    }

    /// `vantage probe NAME --type=dns`: NAME's A records from the system's resolver.
    pub fn adhoc_dns(name: &str, timeout: Duration, location: &str) -> Result<Target, String> {
        let probe = Probe::Dns(Box::new(DnsProbe {
            written: name.trim().to_string(),
            name: question_name(&Host::parse(name.trim())?, RecordType::A)?,
            record_type: RecordType::A,
            server: None,
            ip_version: IpVersion::Auto,
            transport: dns::Transport::Udp,
            expect_addresses: None,
            expect_regex: None,
            valid_rcodes: vec![ResponseCode::NoError],
        }));
        Ok(Target::adhoc(probe, timeout, location))
    }

    fn adhoc(probe: Probe, timeout: Duration, location: &str) -> Target {
        Target::new(
            "adhoc".to_string(),
            probe,
            RunPolicy {
                timeout,
                retries: 0,
                retry_delay: DEFAULT_RETRY_DELAY,
            },
            // Runs once: the interval only keeps the invariant that a run ends before the next.
            timeout + Duration::from_secs(1),
            None,
            Vec::new(),
            location,
            &BTreeMap::new(),
        )
    }

    /// The same check, pointed at another `HOST:PORT` (`vantage probe --name=X HOST:PORT`).
    pub fn retarget(&self, address: &str) -> Result<Target, String> {
        let probe = match &self.probe {
            Probe::Tcp(tcp) => {
                let (host, port) = parse_address(address)?;
                Probe::Tcp(TcpProbe {
                    tls: match &tcp.tls {
                        Some(tls) => Some(tls.client.target(&host)?),
                        None => None,
                    },
                    host,
                    port,
                    ip_version: tcp.ip_version,
                    resolver: tcp.resolver,
                    steps: tcp.steps.clone(),
                    hold: tcp.hold,
                    starttls: tcp.starttls,
                })
            }
            Probe::Icmp(icmp) => Probe::Icmp(IcmpProbe {
                host: Host::parse(address.trim())?,
                ..icmp.clone()
            }),
            Probe::Dns(dns) => Probe::Dns(Box::new(DnsProbe {
                written: address.trim().to_string(),
                name: question_name(&Host::parse(address.trim())?, dns.record_type)?,
                ..(**dns).clone()
            })),
            Probe::Http(http) => {
                let url = Url::parse(address.trim())?;
                Probe::Http(Box::new(HttpProbe {
                    tls: http.tls.client.target(&url.host)?,
                    url,
                    written: address.trim().to_string(),
                    ..(**http).clone()
                }))
            }
        };
        let target_label = probe.target();
        let labels = self
            .labels
            .iter()
            .map(|(k, v)| {
                let v = if k == "target" { &target_label } else { v };
                (k.clone(), v.clone())
            })
            .collect();
        Ok(Target {
            name: self.name.clone(),
            probe,
            policy: self.policy,
            interval: self.interval,
            interval_on_failure: self.interval_on_failure,
            assertions: self.assertions.clone(),
            labels,
            fingerprint: 0,
        })
    }

    #[allow(clippy::too_many_arguments)] // one call per way a target is made; a struct adds nothing
    fn new(
        name: String,
        probe: Probe,
        policy: RunPolicy,
        interval: Duration,
        interval_on_failure: Option<Duration>,
        assertions: Vec<Assertion>,
        location: &str,
        static_labels: &BTreeMap<String, String>,
    ) -> Target {
        let mut labels = vec![
            ("name".to_string(), name.clone()),
            ("probe".to_string(), probe.kind().to_string()),
            ("target".to_string(), probe.target()),
            ("location".to_string(), location.to_string()),
        ];
        labels.extend(static_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        Target {
            name,
            probe,
            policy,
            interval,
            interval_on_failure,
            assertions,
            labels,
            fingerprint: 0,
        }
    }
}

/// `HOST:PORT`, with IPv6 literals bracketed (`[::1]:6379`).
fn parse_address(text: &str) -> Result<(Host, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not HOST:PORT"))?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{text:?}: the port must be a number from 1 to 65535"))?;
    if host.contains(':') && !host.starts_with('[') {
        return Err(format!(
            "{text:?}: write IPv6 addresses in brackets, e.g. [::1]:{port}"
        ));
    }
    Ok((Host::parse(host)?, port))
}

/// How a config is read.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Overrides the file's `location` (`--location`, `VANTAGE_LOCATION`).
    pub location: Option<String>,
    /// Keep targets meant for other locations and other shards too (`vantage probe --name`).
    pub every_location: bool,
    /// Keep only this shard's targets (`--shard`).
    pub shard: Shard,
}

pub fn load(path: &Path, options: &LoadOptions) -> Result<Config, ConfigErrors> {
    parse(&read(path)?, &path.display().to_string(), options)
}

/// The config file's text, or an error that names the file.
pub fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::whole_file(
            &path.display().to_string(),
            format!("cannot read the config file: {e}"),
        )])
    })
}

/// The parser's limits. Its defaults (250,000 nodes, 1,000,000 events) stop at about 25,000
/// targets; these admit a million short ones, while the alias and anchor limits that stop
/// expansion bombs stay as they are.
fn parse_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 16_000_000;
    budget.max_events = 32_000_000;
    budget.max_total_scalar_bytes = 256 * 1024 * 1024;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// Parses and validates config text; `file` names it in errors.
pub fn parse(text: &str, file: &str, options: &LoadOptions) -> Result<Config, ConfigErrors> {
    parse_with_inputs(text, file, options).0
}

/// [`parse`], also returning the files the config names as read during the load (those read
/// before an error, when it fails).
pub fn parse_with_inputs(
    text: &str,
    file: &str,
    options: &LoadOptions,
) -> (Result<Config, ConfigErrors>, Inputs) {
    let mut path = String::new();
    let raw: Result<RawConfig, _> =
        serde_saphyr::with_deserializer_from_str_with_options(text, parse_options(), |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                path = e.path().to_string();
                e.into_inner()
            })
        })
        .map_err(|e| ConfigErrors(vec![ConfigError::from_parse(file, &e, &path)]));
    let raw = match raw {
        Ok(raw) => raw,
        Err(errors) => return (Err(errors), Inputs::default()),
    };
    let mut builder = Builder {
        file,
        errors: Vec::new(),
        files: BTreeMap::new(),
        used: Vec::new(),
    };
    let config = builder.build(&raw, options);
    let inputs = Inputs {
        files: builder
            .files
            .iter()
            .map(|(path, read)| (path.clone(), digest_read(read)))
            .collect(),
    };
    (config, inputs)
}

/// The files a config names (tokens, CAs, client certificates), each with a digest of the
/// content it was built from, so that a reload can tell whether any of them changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    pub files: BTreeMap<PathBuf, u64>,
}

impl Inputs {
    /// Whether every file still has the content it had when the config was built.
    pub fn unchanged_on_disk(&self) -> bool {
        self.files
            .iter()
            .all(|(path, digest)| digest_read(&read_bytes(path)) == *digest)
    }
}

fn read_bytes(path: &Path) -> FileRead {
    std::fs::read(path).map_err(|e| (e.kind(), e.to_string()))
}

fn digest_read(read: &FileRead) -> u64 {
    let mut hasher = DefaultHasher::new();
    read.hash(&mut hasher);
    hasher.finish()
}

impl Config {
    /// What `check-config` prints: enough to see that the file means what its author meant.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let location = if self.location.is_empty() {
            "(none)"
        } else {
            &self.location
        };
        let _ = writeln!(out, "location: {location}");
        let _ = writeln!(out, "max_concurrent_probes: {}", self.max_concurrent_probes);
        if self.shard.is_whole() {
            let _ = writeln!(out, "targets: {}", self.targets.len());
        } else {
            let _ = writeln!(
                out,
                "targets: {} in shard {}, {} in the other shards",
                self.targets.len(),
                self.shard,
                self.other_shards
            );
        }
        for t in &self.targets {
            let _ = write!(
                out,
                "  {} ({} {}) every {}, timeout {}",
                t.name,
                t.probe.kind(),
                t.probe.target(),
                duration::format(t.interval),
                duration::format(t.policy.timeout)
            );
            if t.policy.retries > 0 {
                let _ = write!(
                    out,
                    ", {} retries {} apart",
                    t.policy.retries,
                    duration::format(t.policy.retry_delay)
                );
            }
            if let Some(iof) = t.interval_on_failure {
                let _ = write!(out, ", every {} while failing", duration::format(iof));
            }
            let tls = match &t.probe {
                Probe::Icmp(icmp) => {
                    let _ = write!(
                        out,
                        ", {} echoes of {} bytes",
                        icmp.count, icmp.payload_size
                    );
                    None
                }
                Probe::Dns(dns) => {
                    let server = dns
                        .server
                        .map_or("the system resolver".to_string(), |s| s.to_string());
                    let _ = write!(
                        out,
                        ", {} over {} to {server}",
                        dns.record_type, dns.transport
                    );
                    None
                }
                Probe::Tcp(tcp) => tcp.tls.as_ref(),
                Probe::Http(http) => {
                    let _ = write!(out, ", {}", http.method);
                    if !http.headers.is_empty() {
                        let names: Vec<String> = http
                            .headers
                            .iter()
                            .map(|h| {
                                let secret = if h.secret { " (secret)" } else { "" };
                                format!("{}{secret}", h.name)
                            })
                            .collect();
                        let _ = write!(out, " with {}", names.join(", "));
                    }
                    if !http.follow_redirects {
                        let _ = write!(out, ", redirects not followed");
                    }
                    (http.url.scheme == Scheme::Https).then_some(&http.tls)
                }
            };
            if let Some(tls) = tls {
                let options = &tls.client.options;
                let verified = if !options.verify {
                    " not verified"
                } else if options.skip_hostname_verify {
                    " without hostname check"
                } else {
                    ""
                };
                let _ = write!(out, ", TLS{verified} as {}", tls.server_name.to_str());
            }
            if !t.assertions.is_empty() {
                let names: Vec<&str> = t.assertions.iter().map(|a| a.name()).collect();
                let _ = write!(out, ", asserting {}", names.join(", "));
            }
            let _ = writeln!(out);
        }
        if !self.elsewhere.is_empty() {
            let _ = writeln!(
                out,
                "not run at this location: {}",
                self.elsewhere.join(", ")
            );
        }
        out
    }
}

/// Where a setting's value came from, so an error about it can point at the right line.
#[derive(Debug, Clone, Copy)]
enum Origin {
    BuiltIn,
    Defaults(Location),
    Target(Location),
}

#[derive(Debug, Clone, Copy)]
struct Setting<T> {
    value: T,
    origin: Origin,
}

/// The settings a target inherits: built-in values, overridden by `defaults`, then by the target.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    interval: Setting<Duration>,
    timeout: Setting<Duration>,
    retries: Setting<u32>,
    retry_delay: Setting<Duration>,
    interval_on_failure: Option<Setting<Duration>>,
    ip_version: IpVersion,
}

/// The schedule keys as written in one place (`defaults` or a target).
struct Overrides<'r> {
    interval: Option<&'r S<ConfigDuration>>,
    timeout: Option<&'r S<ConfigDuration>>,
    retries: Option<&'r S<i64>>,
    retry_delay: Option<&'r S<ConfigDuration>>,
    interval_on_failure: Option<&'r S<ConfigDuration>>,
    ip_version: Option<&'r S<IpVersion>>,
}

impl<'r> From<&'r RawDefaults> for Overrides<'r> {
    fn from(d: &'r RawDefaults) -> Self {
        Overrides {
            interval: d.interval.as_ref(),
            timeout: d.timeout.as_ref(),
            retries: d.retries.as_ref(),
            retry_delay: d.retry_delay.as_ref(),
            interval_on_failure: d.interval_on_failure.as_ref(),
            ip_version: d.ip_version.as_ref(),
        }
    }
}

impl<'r> From<&'r RawTarget> for Overrides<'r> {
    fn from(t: &'r RawTarget) -> Self {
        Overrides {
            interval: t.interval.as_ref(),
            timeout: t.timeout.as_ref(),
            retries: t.retries.as_ref(),
            retry_delay: t.retry_delay.as_ref(),
            interval_on_failure: t.interval_on_failure.as_ref(),
            ip_version: t.ip_version.as_ref(),
        }
    }
}

struct Builder<'a> {
    file: &'a str,
    errors: Vec<ConfigError>,
    /// Every file the config names, as read during this load.
    files: BTreeMap<PathBuf, FileRead>,
    /// The files the target being built reads, for its fingerprint.
    used: Vec<PathBuf>,
}

type FileRead = Result<Vec<u8>, (std::io::ErrorKind, String)>;

impl Builder<'_> {
    fn error(&mut self, at: &Location, path: impl Into<String>, message: impl Into<String>) {
        self.errors
            .push(ConfigError::at(self.file, at, path, message));
    }

    fn build(&mut self, raw: &RawConfig, options: &LoadOptions) -> Result<Config, ConfigErrors> {
        let location = options
            .location
            .clone()
            .or_else(|| raw.location.as_ref().map(|l| l.value.clone()))
            .unwrap_or_default();
        let global_labels = self.labels(raw.labels.as_ref(), "labels");
        let builtin = Schedule {
            interval: builtin(DEFAULT_INTERVAL),
            timeout: builtin(DEFAULT_TIMEOUT),
            retries: builtin(0),
            retry_delay: builtin(DEFAULT_RETRY_DELAY),
            interval_on_failure: None,
            ip_version: IpVersion::Auto,
        };
        let defaults = match &raw.defaults {
            Some(d) => {
                let schedule = self.layer(
                    &builtin,
                    &Overrides::from(&d.value),
                    "defaults",
                    Origin::Defaults,
                );
                self.check_schedule(&schedule, "defaults", in_defaults);
                schedule
            }
            None => builtin,
        };
        let max_concurrent_probes = match &raw.max_concurrent_probes {
            None => DEFAULT_MAX_CONCURRENT_PROBES,
            Some(m) => match usize::try_from(m.value) {
                Ok(n) if (1..=MAX_CONCURRENT_PROBES_LIMIT).contains(&n) => n,
                _ => {
                    self.error(
                        &m.referenced,
                        "max_concurrent_probes",
                        format!(
                            "must be from 1 to {MAX_CONCURRENT_PROBES_LIMIT}, not {}",
                            m.value
                        ),
                    );
                    DEFAULT_MAX_CONCURRENT_PROBES
                }
            },
        };

        let inherited = inherited_digest(raw, &location);
        let mut first_use: HashMap<&str, Location> = HashMap::new();
        let mut targets = Vec::new();
        let mut elsewhere = Vec::new();
        let mut other_shards = 0;
        for (i, t) in raw.targets.iter().enumerate() {
            let path = format!("targets[{i}]");
            let name = &t.value.name;
            if let Some(first) = first_use.get(name.value.as_str()) {
                self.error(
                    &name.referenced,
                    format!("{path}.name"),
                    format!(
                        "duplicate name {:?}: names must be unique (first used on line {})",
                        name.value,
                        first.line()
                    ),
                );
            } else {
                first_use.insert(&name.value, name.referenced);
            }
            let runs_here = self.runs_here(&t.value, &path, &location);
            self.used.clear();
            if let Some(mut target) = self.target(
                &t.value,
                &t.referenced,
                &path,
                &defaults,
                &global_labels,
                &location,
            ) {
                target.fingerprint = self.fingerprint(inherited, &t.value);
                if options.every_location {
                    targets.push(Arc::new(target));
                } else if !runs_here {
                    elsewhere.push(target.name);
                } else if options.shard.owns(&target.name) {
                    targets.push(Arc::new(target));
                } else {
                    other_shards += 1;
                }
            }
        }

        if self.errors.is_empty() {
            Ok(Config {
                location,
                max_concurrent_probes,
                targets,
                elsewhere,
                shard: if options.every_location {
                    Shard::WHOLE
                } else {
                    options.shard
                },
                other_shards,
            })
        } else {
            self.errors.sort_by_key(|e| (e.line, e.column));
            Err(ConfigErrors(std::mem::take(&mut self.errors)))
        }
    }

    fn runs_here(&mut self, t: &RawTarget, path: &str, location: &str) -> bool {
        let Some(locations) = &t.locations else {
            return true;
        };
        if locations.value.is_empty() || locations.value.iter().any(|l| l.trim().is_empty()) {
            self.error(
                &locations.referenced,
                format!("{path}.locations"),
                "list one or more location names, or leave `locations` out to run everywhere",
            );
        }
        locations.value.iter().any(|l| l == location)
    }

    /// Validates static labels: Prometheus label names that do not shadow vantage's own.
    fn labels(
        &mut self,
        raw: Option<&S<BTreeMap<String, String>>>,
        path: &str,
    ) -> BTreeMap<String, String> {
        let Some(labels) = raw else {
            return BTreeMap::new();
        };
        for key in labels.value.keys() {
            let valid = key
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
            let problem = if key.is_empty() || !valid {
                Some(
                    "is not a valid label name: use letters, digits and _, not starting with a digit",
                )
            } else if key.starts_with("__") {
                Some("starts with __, which Prometheus reserves")
            } else if RESERVED_LABELS.contains(&key.as_str()) {
                Some("is a label vantage sets itself")
            } else {
                None
            };
            if let Some(problem) = problem {
                self.error(
                    &labels.referenced,
                    format!("{path}.{key}"),
                    format!("{key:?} {problem}"),
                );
            }
        }
        labels.value.clone()
    }

    fn layer(
        &mut self,
        base: &Schedule,
        over: &Overrides,
        path: &str,
        origin: fn(Location) -> Origin,
    ) -> Schedule {
        let duration = |raw: Option<&S<ConfigDuration>>, inherited: Setting<Duration>| {
            raw.map_or(inherited, |d| Setting {
                value: d.value.0,
                origin: origin(d.referenced),
            })
        };
        let retries = match over.retries {
            None => base.retries,
            Some(r) => match u32::try_from(r.value) {
                Ok(value) => Setting {
                    value,
                    origin: origin(r.referenced),
                },
                Err(_) => {
                    self.error(
                        &r.referenced,
                        format!("{path}.retries"),
                        format!("must be 0 or more, not {}", r.value),
                    );
                    base.retries
                }
            },
        };
        Schedule {
            interval: duration(over.interval, base.interval),
            timeout: duration(over.timeout, base.timeout),
            retries,
            retry_delay: duration(over.retry_delay, base.retry_delay),
            interval_on_failure: over
                .interval_on_failure
                .map(|d| Setting {
                    value: d.value.0,
                    origin: origin(d.referenced),
                })
                .or(base.interval_on_failure),
            ip_version: over.ip_version.map_or(base.ip_version, |v| v.value),
        }
    }

    /// Checks how the schedule's durations relate. A rule is reported where one of its settings
    /// was written in this scope (`local`); rules among inherited values were checked there.
    fn check_schedule(&mut self, s: &Schedule, path: &str, local: fn(&Origin) -> bool) {
        let blame = |b: &mut Self, candidates: &[(&str, Origin)], message: String| {
            if let Some((key, Origin::Defaults(at) | Origin::Target(at))) =
                candidates.iter().find(|(_, o)| local(o))
            {
                b.error(at, format!("{path}.{key}"), message);
            }
        };
        let t = s.timeout;
        let i = s.interval;
        if i.value.is_zero() {
            blame(
                self,
                &[("interval", i.origin)],
                "must be longer than 0s".into(),
            );
        }
        if t.value.is_zero() {
            blame(
                self,
                &[("timeout", t.origin)],
                "must be longer than 0s".into(),
            );
        } else if t.value >= i.value && !i.value.is_zero() {
            blame(
                self,
                &[("timeout", t.origin), ("interval", i.origin)],
                format!(
                    "timeout {} must be shorter than interval {}: a run must end before the next starts",
                    describe(&t, local),
                    describe(&i, local)
                ),
            );
        }
        if let Some(iof) = s.interval_on_failure
            && iof.value <= t.value
        {
            blame(
                self,
                &[("interval_on_failure", iof.origin), ("timeout", t.origin)],
                format!(
                    "interval_on_failure {} must be longer than timeout {}",
                    describe(&iof, local),
                    describe(&t, local)
                ),
            );
        }
        let r = s.retries;
        let d = s.retry_delay;
        if r.value > 0 && d.value >= t.value {
            blame(
                self,
                &[
                    ("retry_delay", d.origin),
                    ("retries", r.origin),
                    ("timeout", t.origin),
                ],
                format!(
                    "retry_delay {} must be shorter than timeout {}: retries happen within one run's timeout",
                    describe(&d, local),
                    describe(&t, local)
                ),
            );
        }
    }

    fn target(
        &mut self,
        t: &RawTarget,
        at: &Location,
        path: &str,
        defaults: &Schedule,
        global_labels: &BTreeMap<String, String>,
        location: &str,
    ) -> Option<Target> {
        let name = &t.name;
        if name.value.trim().is_empty()
            || name.value.trim() != name.value
            || name.value.chars().any(char::is_control)
        {
            self.error(
                &name.referenced,
                format!("{path}.name"),
                "must be non-empty, without surrounding spaces or control characters",
            );
        }
        let schedule = self.layer(defaults, &Overrides::from(t), path, Origin::Target);
        self.check_schedule(&schedule, path, in_target);
        let target_labels = self.labels(t.labels.as_ref(), &format!("{path}.labels"));
        let mut labels = global_labels.clone();
        labels.extend(target_labels);

        let tls_table_on = t
            .tls
            .as_ref()
            .is_some_and(|tls| tls.value.enabled != Some(false));
        let https = t.url.as_ref().is_some_and(|u| {
            u.value
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        });
        let tls_on = tls_table_on || (t.kind.value == Kind::Http && https);
        let assertions = self.assertions(t, path, tls_on);
        let probe = match t.kind.value {
            Kind::Tcp => Probe::Tcp(self.tcp(t, at, path, &schedule)?),
            Kind::Http => Probe::Http(Box::new(self.http(t, at, path, &schedule)?)),
            Kind::Dns => Probe::Dns(Box::new(self.dns(t, at, path, &schedule)?)),
            Kind::Icmp => Probe::Icmp(self.icmp(t, at, path, &schedule)?),
        };
        Some(Target::new(
            name.value.clone(),
            probe,
            RunPolicy {
                timeout: schedule.timeout.value,
                retries: schedule.retries.value,
                retry_delay: schedule.retry_delay.value,
            },
            schedule.interval.value,
            schedule.interval_on_failure.map(|s| s.value),
            assertions?,
            location,
            &labels,
        ))
    }

    fn tcp(
        &mut self,
        t: &RawTarget,
        at: &Location,
        path: &str,
        schedule: &Schedule,
    ) -> Option<TcpProbe> {
        self.foreign_keys(t, path);
        let resolver = self.resolver(t, path);
        let host = self.host(t, at, path, "tcp targets need `host`");
        let port = match &t.port {
            None => {
                self.error(at, format!("{path}.port"), "tcp targets need `port`");
                None
            }
            Some(p) => match u16::try_from(p.value) {
                Ok(port) if port > 0 => Some(port),
                _ => {
                    self.error(
                        &p.referenced,
                        format!("{path}.port"),
                        format!("port {} is out of range 1-65535", p.value),
                    );
                    None
                }
            },
        };
        let (steps, hold) = match &t.tcp {
            Some(tcp) => (
                self.steps(&tcp.value, &format!("{path}.tcp")),
                self.hold(&tcp.value, &format!("{path}.tcp"), schedule),
            ),
            None => (Some(Vec::new()), Duration::ZERO),
        };
        let tls = match (&t.tls, &host) {
            (Some(tls), Some(host)) => self.tls(tls, host, &format!("{path}.tls")),
            _ => Some(None),
        };
        let starttls = self.starttls(t, path);
        Some(TcpProbe {
            host: host?,
            port: port?,
            ip_version: schedule.ip_version,
            resolver: resolver?,
            steps: steps?,
            hold,
            tls: tls?,
            starttls: starttls?,
        })
    }

    /// `tls.starttls`: only with TLS on, and without a dialogue of the user's, because the
    /// dialect's own dialogue is the conversation (and ends it with QUIT or its like).
    fn starttls(&mut self, t: &RawTarget, path: &str) -> Option<Option<Dialect>> {
        let Some(tls) = &t.tls else {
            return Some(None);
        };
        let Some(dialect) = &tls.value.starttls else {
            return Some(None);
        };
        let key = format!("{path}.tls.starttls");
        if tls.value.enabled == Some(false) {
            self.error(
                &dialect.referenced,
                key,
                "starttls upgrades the connection to TLS, which `enabled: false` turns off",
            );
            return None;
        }
        if let Some(tcp) = &t.tcp {
            let raw = &tcp.value;
            if raw.send.is_some()
                || raw.expect.is_some()
                || raw.steps.is_some()
                || raw.hold.is_some()
            {
                self.error(
                    &dialect.referenced,
                    key,
                    format!(
                        "starttls runs the {} dialogue itself; it cannot be combined with \
                         tcp.send, tcp.expect, tcp.steps or tcp.hold",
                        dialect.value
                    ),
                );
                return None;
            }
        }
        Some(Some(dialect.value))
    }

    fn icmp(
        &mut self,
        t: &RawTarget,
        at: &Location,
        path: &str,
        schedule: &Schedule,
    ) -> Option<IcmpProbe> {
        let mut ok = self.foreign_keys(t, path);
        let resolver = self.resolver(t, path);
        let host = self.host(t, at, path, "icmp targets need `host`");
        let empty = RawIcmp::default();
        let raw = t.icmp.as_ref().map_or(&empty, |i| &i.value);
        let ipath = format!("{path}.icmp");
        let mut bounded = |value: Option<&S<i64>>,
                           key: &str,
                           range: std::ops::RangeInclusive<i64>,
                           default: i64| match value {
            None => default,
            Some(v) if range.contains(&v.value) => v.value,
            Some(v) => {
                self.error(
                    &v.referenced,
                    format!("{ipath}.{key}"),
                    format!(
                        "must be from {} to {}, not {}",
                        range.start(),
                        range.end(),
                        v.value
                    ),
                );
                ok = false;
                default
            }
        };
        let count = bounded(raw.count.as_ref(), "count", 1..=100, 3);
        let payload_size = bounded(raw.payload_size.as_ref(), "payload_size", 0..=65_000, 56);
        let max_loss_ratio = match &raw.max_loss_ratio {
            None => 1.0,
            Some(r) if (0.0..=1.0).contains(&r.value) => r.value,
            Some(r) => {
                self.error(
                    &r.referenced,
                    format!("{ipath}.max_loss_ratio"),
                    format!("must be from 0 to 1, not {}", r.value),
                );
                ok = false;
                1.0
            }
        };
        let probe = IcmpProbe {
            host: host?,
            ip_version: schedule.ip_version,
            resolver: resolver?,
            count: u16::try_from(count).ok()?,
            payload_size: usize::try_from(payload_size).ok()?,
            max_loss_ratio,
        };
        ok.then_some(probe)
    }

    fn dns(
        &mut self,
        t: &RawTarget,
        at: &Location,
        path: &str,
        schedule: &Schedule,
    ) -> Option<DnsProbe> {
        let mut ok = self.foreign_keys(t, path);
        let dpath = format!("{path}.dns");
        let host = self.host(
            t,
            at,
            path,
            "dns targets need `host`: the name to ask about",
        )?;
        // Present, or `host()` would have reported it.
        let written = t.host.as_ref()?;
        let empty = RawDns::default();
        let raw = t.dns.as_ref().map_or(&empty, |d| &d.value);
        let record_type = raw
            .record_type
            .as_ref()
            .map_or(RecordType::A, |r| r.value.into());
        let name = match question_name(&host, record_type) {
            Ok(name) => name,
            Err(e) => {
                self.error(&written.referenced, format!("{path}.host"), e);
                return None;
            }
        };
        let server = match &raw.server {
            None => None,
            Some(s) => match net::parse_dns_server(&s.value) {
                Ok(addr) if !schedule.ip_version.accepts(addr.ip()) => {
                    self.error(
                        &s.referenced,
                        format!("{dpath}.server"),
                        format!(
                            "ip_version is {}, but the server {addr} is not an IPv{} address",
                            schedule.ip_version, schedule.ip_version
                        ),
                    );
                    ok = false;
                    None
                }
                Ok(addr) => Some(addr),
                Err(e) => {
                    self.error(&s.referenced, format!("{dpath}.server"), e);
                    ok = false;
                    None
                }
            },
        };
        let expect_regex = match &raw.expect_regex {
            None => None,
            Some(r) => match regex::Regex::new(&r.value) {
                Ok(regex) => Some(regex),
                Err(e) => {
                    self.error(
                        &r.referenced,
                        format!("{dpath}.expect_regex"),
                        format!("invalid regex: {}", regex_message(&e)),
                    );
                    ok = false;
                    None
                }
            },
        };
        let valid_rcodes = match &raw.valid_rcodes {
            None => vec![ResponseCode::NoError],
            Some(list) => {
                let parsed: Result<Vec<ResponseCode>, String> =
                    list.value.iter().map(|c| parse_rcode(c)).collect();
                match parsed {
                    Ok(codes) if !codes.is_empty() => codes,
                    Ok(_) => {
                        self.error(
                            &list.referenced,
                            format!("{dpath}.valid_rcodes"),
                            "list at least one response code, or leave it out for NOERROR",
                        );
                        ok = false;
                        Vec::new()
                    }
                    Err(e) => {
                        self.error(&list.referenced, format!("{dpath}.valid_rcodes"), e);
                        ok = false;
                        Vec::new()
                    }
                }
            }
        };
        let expect_addresses = raw
            .expect_addresses
            .as_ref()
            .map(|a| a.value.iter().copied().collect());
        if let Some(a) = &raw.expect_addresses
            && !matches!(record_type, RecordType::A | RecordType::AAAA)
        {
            self.error(
                &a.referenced,
                format!("{dpath}.expect_addresses"),
                format!(
                    "{record_type} records hold no addresses: use expect_regex, or record_type A or AAAA"
                ),
            );
            ok = false;
        }
        ok.then(|| DnsProbe {
            written: written.value.clone(),
            name,
            record_type,
            server,
            ip_version: schedule.ip_version,
            transport: raw
                .transport
                .as_ref()
                .map_or(dns::Transport::Udp, |t| t.value),
            expect_addresses,
            expect_regex,
            valid_rcodes,
        })
    }

    /// The target's `host`, a name or an IP literal: `None` after reporting it missing (with
    /// `missing`) or invalid.
    fn host(&mut self, t: &RawTarget, at: &Location, path: &str, missing: &str) -> Option<Host> {
        let Some(h) = &t.host else {
            self.error(at, format!("{path}.host"), missing);
            return None;
        };
        Host::parse(&h.value)
            .map_err(|e| self.error(&h.referenced, format!("{path}.host"), e))
            .ok()
    }

    /// `dns.server` (and `dns.transport`) on a tcp or http target: the resolver of its host.
    /// `Some(None)` without one, `None` after reporting errors.
    fn resolver(&mut self, t: &RawTarget, path: &str) -> Option<Option<dns::Server>> {
        let Some(raw) = &t.dns else {
            return Some(None);
        };
        let dns = &raw.value;
        let mut ok = true;
        for (key, written) in [
            (
                "record_type",
                dns.record_type.as_ref().map(|x| x.referenced),
            ),
            (
                "expect_addresses",
                dns.expect_addresses.as_ref().map(|x| x.referenced),
            ),
            (
                "expect_regex",
                dns.expect_regex.as_ref().map(|x| x.referenced),
            ),
            (
                "valid_rcodes",
                dns.valid_rcodes.as_ref().map(|x| x.referenced),
            ),
        ] {
            if let Some(at) = written {
                self.error(
                    &at,
                    format!("{path}.dns.{key}"),
                    format!(
                        "`{key}` applies to dns targets; on {} targets `dns` picks the resolver (`server`, `transport`)",
                        t.kind.value.as_str()
                    ),
                );
                ok = false;
            }
        }
        let Some(server) = &dns.server else {
            self.error(
                &raw.referenced,
                format!("{path}.dns.server"),
                "give the resolver's address, such as 10.0.0.53, or leave `dns` out for the system's",
            );
            return None;
        };
        let addr = match net::parse_dns_server(&server.value) {
            Ok(addr) => addr,
            Err(e) => {
                self.error(&server.referenced, format!("{path}.dns.server"), e);
                return None;
            }
        };
        ok.then_some(Some(dns::Server {
            addr,
            transport: dns
                .transport
                .as_ref()
                .map_or(dns::Transport::Udp, |t| t.value),
        }))
    }

    /// Keys that belong to other target types, each an error where it is written. Returns
    /// whether there were none.
    fn foreign_keys(&mut self, t: &RawTarget, path: &str) -> bool {
        let kind = t.kind.value;
        let http = kind == Kind::Http;
        let keys = [
            (
                "host",
                t.host.as_ref().map(|x| x.referenced),
                !http,
                "http targets take a `url`, not `host`",
            ),
            (
                "port",
                t.port.as_ref().map(|x| x.referenced),
                kind == Kind::Tcp,
                if http {
                    "http targets take the port in the `url`"
                } else {
                    "`port` applies to tcp targets only"
                },
            ),
            (
                "tls",
                t.tls.as_ref().map(|x| x.referenced),
                http || kind == Kind::Tcp,
                "`tls` applies to tcp and http targets only",
            ),
            (
                "url",
                t.url.as_ref().map(|x| x.referenced),
                http,
                "`url` is for http targets; other targets use `host` (and `port`)",
            ),
            (
                "tcp",
                t.tcp.as_ref().map(|x| x.referenced),
                kind == Kind::Tcp,
                "the `tcp` table applies to tcp targets only",
            ),
            (
                "http",
                t.http.as_ref().map(|x| x.referenced),
                http,
                "the `http` table applies to http targets only",
            ),
            (
                "icmp",
                t.icmp.as_ref().map(|x| x.referenced),
                kind == Kind::Icmp,
                "the `icmp` table applies to icmp targets only",
            ),
        ];
        let mut ok = true;
        for (key, written, belongs, message) in keys {
            if let Some(at) = written
                && !belongs
            {
                self.error(&at, format!("{path}.{key}"), message);
                ok = false;
            }
        }
        ok
    }

    fn http(
        &mut self,
        t: &RawTarget,
        at: &Location,
        path: &str,
        schedule: &Schedule,
    ) -> Option<HttpProbe> {
        let mut ok = self.foreign_keys(t, path);
        let resolver = self.resolver(t, path);
        let Some(written) = &t.url else {
            self.error(at, format!("{path}.url"), "http targets need `url`");
            return None;
        };
        let url = match Url::parse(written.value.trim()) {
            Ok(url) => url,
            Err(e) => {
                self.error(&written.referenced, format!("{path}.url"), e);
                return None;
            }
        };
        let empty = RawHttp::default();
        let (http, http_at) = match &t.http {
            Some(h) => (&h.value, h.referenced),
            None => (&empty, *at),
        };
        let hpath = format!("{path}.http");
        let method = match &http.method {
            None => Method::GET,
            Some(m) => match method(&m.value) {
                Ok(method) => method,
                Err(e) => {
                    self.error(&m.referenced, format!("{hpath}.method"), e);
                    ok = false;
                    Method::GET
                }
            },
        };
        let headers = self.headers(http, &hpath);
        let valid_status_codes = match &http.valid_status_codes {
            None => vec![StatusCodes::SUCCESS],
            Some(codes) if codes.value.is_empty() => {
                self.error(
                    &codes.referenced,
                    format!("{hpath}.valid_status_codes"),
                    "list at least one code or range, or leave it out for 200-299",
                );
                ok = false;
                Vec::new()
            }
            Some(codes) => codes.value.iter().map(|c| c.value).collect(),
        };
        let mut regex = |raw: Option<&S<String>>, key: &str| match raw {
            None => Some(None),
            Some(r) => match RegexBuilder::new(&r.value).build() {
                Ok(regex) => Some(Some(regex)),
                Err(e) => {
                    self.error(
                        &r.referenced,
                        format!("{hpath}.{key}"),
                        format!("invalid regex: {}", regex_message(&e)),
                    );
                    None
                }
            },
        };
        let body_regex = regex(http.body_regex.as_ref(), "body_regex");
        let body_not_regex = regex(http.body_not_regex.as_ref(), "body_not_regex");
        let body_size_limit = match &http.body_size_limit {
            None => DEFAULT_BODY_SIZE_LIMIT,
            Some(limit) if limit.value.0 == 0 || limit.value.0 > MAX_BODY_SIZE_LIMIT => {
                self.error(
                    &limit.referenced,
                    format!("{hpath}.body_size_limit"),
                    format!("must be from 1 byte to {}MiB", MAX_BODY_SIZE_LIMIT >> 20),
                );
                ok = false;
                DEFAULT_BODY_SIZE_LIMIT
            }
            Some(limit) => limit.value.0,
        };
        let http2 = http.http2.as_ref().is_some_and(|h| h.value);
        if let Some(h2) = &http.http2
            && h2.value
            && url.scheme == Scheme::Http
        {
            self.error(
                &h2.referenced,
                format!("{hpath}.http2"),
                "HTTP/2 is negotiated through TLS (ALPN): it needs an https URL",
            );
            ok = false;
        }
        let (tls, tls_elsewhere) = self.http_tls(t, &url, http2, http_at, path)?;
        Some(HttpProbe {
            written: written.value.trim().to_string(),
            url,
            method,
            headers: headers?,
            body: http
                .body
                .as_ref()
                .map(|b| Bytes::from(b.value.clone()))
                .unwrap_or_default(),
            valid_status_codes,
            body_regex: body_regex?,
            body_not_regex: body_not_regex?,
            body_size_limit,
            follow_redirects: http.follow_redirects.unwrap_or(true),
            ip_version: schedule.ip_version,
            resolver: resolver?,
            tls,
            tls_elsewhere,
        })
        .filter(|_| ok)
    }

    /// The TLS clients of an http target: every one has them, because even an http URL may
    /// redirect to https. The `tls` table sets their options; the second, for other hosts,
    /// leaves out the client certificate.
    fn http_tls(
        &mut self,
        t: &RawTarget,
        url: &Url,
        http2: bool,
        at: Location,
        path: &str,
    ) -> Option<(TlsTarget, Arc<TlsClient>)> {
        let tpath = format!("{path}.tls");
        let options = match &t.tls {
            None => TlsOptions::default(),
            Some(raw) => {
                if let Some(starttls) = &raw.value.starttls {
                    self.error(
                        &starttls.referenced,
                        format!("{tpath}.starttls"),
                        "starttls applies to tcp targets; http targets use an https URL",
                    );
                    return None;
                }
                match self.tls_options(raw, &tpath)? {
                    Some(options) => options,
                    None if url.scheme == Scheme::Https => {
                        self.error(
                            &raw.referenced,
                            format!("{tpath}.enabled"),
                            "an https URL always uses TLS",
                        );
                        return None;
                    }
                    None => TlsOptions::default(),
                }
            }
        };
        let options = TlsOptions {
            alpn: http::alpn(http2),
            ..options
        };
        let anonymous = TlsOptions {
            client_cert: None,
            ..options.clone()
        };
        let own = self.tls_target(options, t.tls.as_deref(), at, &url.host, &tpath)?;
        if own.client.options.client_cert.is_none() {
            let shared = Arc::clone(&own.client);
            return Some((own, shared));
        }
        // Everything but the certificate was built once already, so this cannot fail anew.
        match TlsClient::build(anonymous, &mut |p| self.read_file(p)) {
            Ok(client) => Some((own, Arc::new(client))),
            Err(e) => {
                self.error(&at, tpath, e.message);
                None
            }
        }
    }

    /// The `headers` table, files read now: `None` after reporting errors.
    fn headers(&mut self, http: &RawHttp, path: &str) -> Option<Vec<Header>> {
        let Some(headers) = &http.headers else {
            return Some(Vec::new());
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (name, raw) in &headers.value {
            let key = format!("{path}.headers.{name}");
            let header_name = match HeaderName::from_bytes(name.as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    self.error(
                        &raw.referenced,
                        key,
                        format!("{name:?} is not a valid header name"),
                    );
                    ok = false;
                    continue;
                }
            };
            if OWN_HEADERS.contains(&header_name.as_str()) {
                self.error(
                    &raw.referenced,
                    key,
                    format!("vantage sets {name} itself (one request per connection, then close)"),
                );
                ok = false;
                continue;
            }
            let (bytes, from_file) = match &raw.value {
                RawHeaderValue::Value(v) => (v.as_bytes().to_vec(), false),
                RawHeaderValue::File(f) => {
                    let file = self.relative(&f.file);
                    match self.read_file(&file) {
                        Ok(bytes) => (bytes, true),
                        Err(e) => {
                            self.error(
                                &raw.referenced,
                                key,
                                format!("cannot read {}: {e}", file.display()),
                            );
                            ok = false;
                            continue;
                        }
                    }
                }
            };
            // A file written by `echo` ends in a newline that is not part of the token.
            let end = bytes
                .iter()
                .rposition(|b| !matches!(b, b'\r' | b'\n'))
                .map_or(0, |i| i + 1);
            let value = match HeaderValue::from_bytes(&bytes[..end]) {
                Ok(v) if end > 0 || !from_file => v,
                _ => {
                    // Never quote the value: it may be a secret.
                    let what = if from_file {
                        "the file's content"
                    } else {
                        "the value"
                    };
                    self.error(
                        &raw.referenced,
                        key,
                        format!(
                            "{what} is not a valid header value (empty, or control characters)"
                        ),
                    );
                    ok = false;
                    continue;
                }
            };
            if header_name == ::http::header::HOST
                && value
                    .to_str()
                    .map_or(true, |v| v.parse::<Authority>().is_err())
            {
                self.error(
                    &raw.referenced,
                    key,
                    "Host must be a host name with an optional port, such as api.example.com:8443",
                );
                ok = false;
                continue;
            }
            let secret = from_file || CREDENTIAL_HEADERS.contains(&header_name.as_str());
            let mut value = value;
            value.set_sensitive(secret);
            out.push(Header {
                name: header_name,
                value,
                secret,
            });
        }
        ok.then_some(out)
    }

    /// The `tls` table: `Some(None)` when TLS is off, `None` after reporting errors. Files are
    /// read here, so a missing CA or key fails the load (or the reload) instead of every run.
    fn tls(&mut self, raw: &S<RawTls>, host: &Host, path: &str) -> Option<Option<TlsTarget>> {
        let Some(options) = self.tls_options(raw, path)? else {
            return Some(None);
        };
        self.tls_target(options, Some(raw), raw.referenced, host, path)
            .map(Some)
    }

    /// The `tls` table's options: `Some(None)` when TLS is off, `None` after reporting errors.
    fn tls_options(&mut self, raw: &S<RawTls>, path: &str) -> Option<Option<TlsOptions>> {
        let tls = &raw.value;
        if tls.enabled == Some(false) {
            return Some(None);
        }
        let client_cert = match (&tls.cert_file, &tls.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(ClientCertFiles {
                cert_file: self.relative(&cert.value),
                key_file: self.relative(&key.value),
            }),
            (Some(given), None) | (None, Some(given)) => {
                let missing = if tls.cert_file.is_some() {
                    "key_file"
                } else {
                    "cert_file"
                };
                self.error(
                    &given.referenced,
                    format!("{path}.{missing}"),
                    "cert_file and key_file go together: a client certificate needs its key",
                );
                return None;
            }
        };
        let alert_before_expiry = tls.alert_before_expiry.as_ref().map(|d| d.value.0);
        if let Some(d) = &tls.alert_before_expiry
            && d.value.0.is_zero()
        {
            self.error(
                &d.referenced,
                format!("{path}.alert_before_expiry"),
                "must be longer than 0s; leave it out for no expiry alert",
            );
            return None;
        }
        let defaults = TlsOptions::default();
        let options = TlsOptions {
            verify: tls.verify.unwrap_or(defaults.verify),
            server_name: tls.server_name.as_ref().map(|n| n.value.clone()),
            skip_hostname_verify: tls
                .skip_hostname_verify
                .unwrap_or(defaults.skip_hostname_verify),
            min_version: tls
                .min_version
                .as_ref()
                .map_or(defaults.min_version, |v| v.value),
            trust: tls.trust.as_ref().map_or(defaults.trust, |t| t.value),
            ca_file: tls.ca_file.as_ref().map(|f| self.relative(&f.value)),
            client_cert,
            alert_before_expiry,
            alpn: Vec::new(),
        };
        Some(Some(options))
    }

    /// The TLS client for `options`, named for `host`. Build errors point at the option of
    /// the `raw` table they concern, or at `at`.
    fn tls_target(
        &mut self,
        options: TlsOptions,
        raw: Option<&S<RawTls>>,
        at: Location,
        host: &Host,
        path: &str,
    ) -> Option<TlsTarget> {
        let client = match TlsClient::build(options, &mut |p| self.read_file(p)) {
            Ok(client) => Arc::new(client),
            Err(e) => {
                let field = |f: fn(&RawTls) -> Option<Location>| {
                    raw.and_then(|r| f(&r.value)).unwrap_or(at)
                };
                let (key, field) = match e.key {
                    OptionKey::ServerName => (
                        "server_name",
                        field(|t| t.server_name.as_ref().map(|f| f.referenced)),
                    ),
                    OptionKey::Trust => {
                        ("trust", field(|t| t.trust.as_ref().map(|f| f.referenced)))
                    }
                    OptionKey::CaFile => (
                        "ca_file",
                        field(|t| t.ca_file.as_ref().map(|f| f.referenced)),
                    ),
                    OptionKey::CertFile => (
                        "cert_file",
                        field(|t| t.cert_file.as_ref().map(|f| f.referenced)),
                    ),
                    OptionKey::KeyFile => (
                        "key_file",
                        field(|t| t.key_file.as_ref().map(|f| f.referenced)),
                    ),
                };
                self.error(&field, format!("{path}.{key}"), e.message);
                return None;
            }
        };
        match client.target(host) {
            Ok(target) => Some(target),
            Err(message) => {
                self.error(&at, path, message);
                None
            }
        }
    }

    /// A path from the config, relative to the config file's folder (as Prometheus does).
    fn relative(&self, path: &str) -> PathBuf {
        let folder = Path::new(self.file).parent().unwrap_or(Path::new(""));
        folder.join(path)
    }

    /// A file the target being built reads. Each file is read once per load, however many
    /// targets use it, and the fingerprint hashes these very bytes: a file that changes during
    /// a load cannot leave a target running old content under a new fingerprint.
    fn read_file(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.used.push(path.to_path_buf());
        let read = self
            .files
            .entry(path.to_path_buf())
            .or_insert_with(|| read_bytes(path));
        read.clone()
            .map_err(|(kind, message)| std::io::Error::new(kind, message))
    }

    /// See [`Target::fingerprint`]. Serializing the parsed entry drops source positions (spans
    /// serialize as their value) and covers every option, inline secrets included, without a
    /// list that could fall behind the schema.
    fn fingerprint(&self, inherited: u64, raw: &RawTarget) -> u64 {
        let mut hasher = DefaultHasher::new();
        hasher.write_u64(inherited);
        hash_serialized(&mut hasher, raw);
        for path in &self.used {
            path.hash(&mut hasher);
            self.files.get(path).hash(&mut hasher);
        }
        hasher.finish()
    }

    /// The `assertions` list: `None` after reporting errors.
    fn assertions(&mut self, t: &RawTarget, path: &str, tls_on: bool) -> Option<Vec<Assertion>> {
        let Some(list) = &t.assertions else {
            return Some(Vec::new());
        };
        let mut seen: HashMap<AssertionKind, u64> = HashMap::new();
        let mut out = Vec::new();
        let mut ok = true;
        for (i, raw) in list.value.iter().enumerate() {
            let path = format!("{path}.assertions[{i}]");
            match self.assertion(raw, &path, tls_on) {
                Some(assertion) => out.push(assertion),
                None => ok = false,
            }
            let kind = &raw.kind;
            if let Some(line) = seen.get(&kind.value) {
                self.error(
                    &kind.referenced,
                    format!("{path}.type"),
                    format!(
                        "a {} assertion is already given on line {line}",
                        kind.value.as_str()
                    ),
                );
                ok = false;
            } else {
                seen.insert(kind.value, kind.referenced.line());
            }
        }
        ok.then_some(out)
    }

    fn assertion(&mut self, raw: &RawAssertion, path: &str, tls_on: bool) -> Option<Assertion> {
        let kind = raw.kind.value;
        let name = kind.as_str();
        let fields = [
            (
                "status",
                raw.status.as_ref().map(|f| f.referenced),
                AssertionKind::Connection,
            ),
            (
                "less_than",
                raw.less_than.as_ref().map(|f| f.referenced),
                AssertionKind::ResponseTime,
            ),
            (
                "greater_than",
                raw.greater_than.as_ref().map(|f| f.referenced),
                AssertionKind::CertificateExpiry,
            ),
            (
                "in",
                raw.one_of.as_ref().map(|f| f.referenced),
                AssertionKind::TlsVersion,
            ),
        ];
        let mut ok = true;
        for (field, at, owner) in fields {
            match at {
                Some(at) if owner != kind => {
                    self.error(
                        &at,
                        format!("{path}.{field}"),
                        format!("`{field}` does not apply to {name} assertions"),
                    );
                    ok = false;
                }
                None if owner == kind => {
                    self.error(
                        &raw.kind.referenced,
                        format!("{path}.{field}"),
                        format!("{name} assertions need `{field}`"),
                    );
                    ok = false;
                }
                _ => {}
            }
        }
        if !ok {
            return None;
        }
        if matches!(
            kind,
            AssertionKind::CertificateExpiry | AssertionKind::TlsVersion
        ) && !tls_on
        {
            self.error(
                &raw.kind.referenced,
                format!("{path}.type"),
                format!(
                    "a {name} assertion needs TLS: add a `tls` table to the target, or use an https URL"
                ),
            );
            return None;
        }
        match kind {
            AssertionKind::Connection => {
                let status = raw.status.as_ref()?;
                match status.value.as_str() {
                    "success" => Some(Assertion::Connection { succeeds: true }),
                    "failure" => Some(Assertion::Connection { succeeds: false }),
                    other => {
                        self.error(
                            &status.referenced,
                            format!("{path}.status"),
                            format!("status {other:?} is not one of success, failure"),
                        );
                        None
                    }
                }
            }
            AssertionKind::ResponseTime => {
                let less_than = raw.less_than.as_ref()?;
                if less_than.value.0.is_zero() {
                    self.error(
                        &less_than.referenced,
                        format!("{path}.less_than"),
                        "must be longer than 0s",
                    );
                    return None;
                }
                Some(Assertion::ResponseTime {
                    less_than: less_than.value.0,
                })
            }
            AssertionKind::CertificateExpiry => Some(Assertion::CertificateExpiry {
                greater_than: raw.greater_than.as_ref()?.value.0,
            }),
            AssertionKind::TlsVersion => {
                let one_of = raw.one_of.as_ref()?;
                if one_of.value.is_empty() {
                    self.error(
                        &one_of.referenced,
                        format!("{path}.in"),
                        "list at least one of TLSv1.2, TLSv1.3",
                    );
                    return None;
                }
                Some(Assertion::TlsVersion {
                    one_of: one_of.value.clone(),
                })
            }
        }
    }

    fn hold(&mut self, tcp: &RawTcp, path: &str, schedule: &Schedule) -> Duration {
        let Some(hold) = &tcp.hold else {
            return Duration::ZERO;
        };
        if hold.value.0 >= schedule.timeout.value {
            self.error(
                &hold.referenced,
                format!("{path}.hold"),
                format!(
                    "hold {} must be shorter than timeout {}",
                    duration::format(hold.value.0),
                    describe(&schedule.timeout, in_target)
                ),
            );
        }
        hold.value.0
    }

    fn steps(&mut self, tcp: &RawTcp, path: &str) -> Option<Vec<Step>> {
        if let Some(steps) = &tcp.steps
            && (tcp.send.is_some() || tcp.expect.is_some())
        {
            self.error(
                &steps.referenced,
                format!("{path}.steps"),
                "use either `steps` or `send`/`expect`, not both",
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        match &tcp.steps {
            None => {
                let shorthand = [(tcp.send.as_ref(), None), (None, tcp.expect.as_ref())];
                for (send, expect) in shorthand {
                    if send.is_some() || expect.is_some() {
                        let step = self.step(send, expect, path);
                        ok &= step.is_some();
                        out.extend(step);
                    }
                }
            }
            Some(steps) => {
                for (j, step) in steps.value.iter().enumerate() {
                    let step_path = format!("{path}.steps[{j}]");
                    let (send, expect) = (step.value.send.as_ref(), step.value.expect.as_ref());
                    if send.is_some() == expect.is_some() {
                        self.error(
                            &step.referenced,
                            step_path,
                            "each step has exactly one of `send` or `expect`",
                        );
                        ok = false;
                    } else {
                        let step = self.step(send, expect, &step_path);
                        ok &= step.is_some();
                        out.extend(step);
                    }
                }
            }
        }
        ok.then_some(out)
    }

    /// One step from its `send` or its `expect` (the caller ensures exactly one is given).
    fn step(
        &mut self,
        send: Option<&S<String>>,
        expect: Option<&S<String>>,
        path: &str,
    ) -> Option<Step> {
        if let Some(send) = send {
            if send.value.is_empty() {
                self.error(
                    &send.referenced,
                    format!("{path}.send"),
                    "send must not be empty",
                );
                return None;
            }
            return Some(Step::Send(send.value.as_bytes().to_vec()));
        }
        let expect = expect?;
        // Multi-line: after a partial match the rest of that line is still unread, and `^250`
        // must still find the next reply line. `\A` anchors at the unread bytes' start.
        match RegexBuilder::new(&expect.value).multi_line(true).build() {
            Ok(regex) => Some(Step::Expect(regex)),
            Err(e) => {
                self.error(
                    &expect.referenced,
                    format!("{path}.expect"),
                    format!("invalid regex: {}", regex_message(&e)),
                );
                None
            }
        }
    }
}

/// An HTTP method as written: methods are case-sensitive, and `get` is not `GET`.
fn method(text: &str) -> Result<Method, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "method {text:?} is not an upper-case method name such as GET, HEAD or POST"
        ));
    }
    Method::from_bytes(text.as_bytes()).map_err(|e| format!("method {text:?}: {e}"))
}

/// The name a dns target asks about: its host as a fully qualified name, or for an address
/// asked for PTR records, the address's reverse name (`4.3.2.1.in-addr.arpa.`).
fn question_name(host: &Host, record_type: RecordType) -> Result<Name, String> {
    match host {
        Host::Ip(ip) if record_type == RecordType::PTR => Ok(Name::from(*ip)),
        Host::Ip(ip) => Err(format!(
            "{ip} is an address: ask about a name, or use record_type: PTR for its reverse name"
        )),
        Host::Name(name) => {
            let mut fqdn = Name::from_ascii(name).map_err(|e| format!("{name:?}: {e}"))?;
            fqdn.set_fqdn(true);
            Ok(fqdn)
        }
    }
}

/// Digest of what every target inherits: `defaults`, global `labels` and the location.
fn inherited_digest(raw: &RawConfig, location: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    let inherited = (
        raw.defaults.as_ref().map(|d| &d.value),
        raw.labels.as_ref().map(|l| &l.value),
        location,
    );
    hash_serialized(&mut hasher, &inherited);
    hasher.finish()
}

fn hash_serialized(hasher: &mut DefaultHasher, value: &impl serde::Serialize) {
    /// Feeds serialized bytes straight into the hasher, without building the text.
    struct Feed<'h>(&'h mut DefaultHasher);
    impl std::io::Write for Feed<'_> {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.write(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // Plain data into a writer that cannot fail: serializing cannot fail either.
    let _ = serde_json::to_writer(Feed(hasher), value);
}

fn builtin<T>(value: T) -> Setting<T> {
    Setting {
        value,
        origin: Origin::BuiltIn,
    }
}

/// A duration setting for a message reported in a scope where `local` settings were written:
/// inherited values say where they come from.
fn describe(s: &Setting<Duration>, local: fn(&Origin) -> bool) -> String {
    let value = duration::format(s.value);
    match s.origin {
        o if local(&o) => value,
        Origin::BuiltIn => format!("{value} (the built-in default)"),
        Origin::Defaults(at) => format!("{value} (from defaults, line {})", at.line()),
        Origin::Target(_) => value,
    }
}

fn in_target(o: &Origin) -> bool {
    matches!(o, Origin::Target(_))
}

fn in_defaults(o: &Origin) -> bool {
    matches!(o, Origin::Defaults(_))
}

/// The regex crate's syntax errors span several lines with a caret diagram; keep the last one.
fn regex_message(err: &regex::Error) -> String {
    let text = err.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(&text);
    last.trim().trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests;
