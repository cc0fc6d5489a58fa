//! `--web.config.file`: the Prometheus exporter-toolkit's web configuration, so that a file
//! written for node_exporter works here: `basic_auth_users` (bcrypt hashes, as `htpasswd -nBC
//! 10` makes them), `http_server_config.headers`, `tls_server_config` (see `tls`) and
//! `rate_limit` (see `rate_limit`).
//!
//! As in the toolkit, the file is read again when it changes (or a file its TLS section names
//! does), so users, headers and certificates change without a restart; an edit that breaks it
//! answers 500 until it is fixed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::digest;
use base64::Engine;
use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::rate_limit::{Bucket, Rate, RawRateLimit};
use super::tls::{RawTls, ServerTls};
use crate::config::ConfigError;

/// Right passwords remembered (as digests), so that a user who comes back costs no bcrypt run;
/// only right ones, so that a client guessing cannot push them out. Emptied past this many.
const MAX_VERDICTS: usize = 1024;

/// bcrypt checks run at once. A client sending a new wrong password with every request would
/// otherwise queue a check each (tens of ms of CPU) and starve the scrapes; past this, a
/// password that is not remembered is refused unchecked until a check ends.
const MAX_CHECKS: usize = 2;

/// How often the files are looked at for a change: at most once a second, not at every request,
/// which a flood of requests would turn into a flood of file system calls.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The headers the toolkit lets a web config set, and no others (the toolkit's rule).
const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<RawRateLimit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    headers: Option<BTreeMap<String, String>>,
    /// HTTP/2 for clients that offer it through TLS (ALPN); on by default, as in the toolkit.
    http2: Option<bool>,
}

/// What a web config file says.
#[derive(Debug)]
pub struct Settings {
    /// User name to bcrypt hash; empty: no authentication.
    pub users: BTreeMap<String, String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `tls_server_config`: the endpoints are served over TLS.
    pub tls: Option<Arc<ServerTls>>,
    /// `rate_limit`: how fast requests may come, over all clients.
    pub rate: Option<Rate>,
}

/// Parses a web config; `file` names it in errors, and the files it names are relative to
/// `dir`, its folder.
pub fn parse(text: &str, file: &str, dir: &Path) -> Result<Settings, ConfigError> {
    let mut path = String::new();
    let raw: Raw = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    })
    .map_err(|e| ConfigError::from_parse(file, &e, &path))?;
    let http2 = raw
        .http_server_config
        .as_ref()
        .and_then(|h| h.http2)
        .unwrap_or(true);
    let tls = match raw.tls_server_config.as_ref().filter(|t| !t.is_unset()) {
        None => None,
        Some(tls) => Some(Arc::new(
            super::tls::build(tls, dir, http2).map_err(|e| ConfigError::whole_file(file, e))?,
        )),
    };
    let mut headers = Vec::new();
    for (name, value) in raw
        .http_server_config
        .and_then(|h| h.headers)
        .unwrap_or_default()
    {
        if !ALLOWED_HEADERS
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&name))
        {
            return Err(ConfigError::whole_file(
                file,
                format!(
                    "http_server_config.headers.{name}: only {} may be set",
                    ALLOWED_HEADERS.join(", ")
                ),
            ));
        }
        // The two headers whose values the toolkit checks, checked alike (case-sensitively).
        let allowed: &[&str] = match name.to_ascii_lowercase().as_str() {
            "x-content-type-options" => &["nosniff"],
            "x-frame-options" => &["deny", "sameorigin"],
            _ => &[],
        };
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(ConfigError::whole_file(
                file,
                format!(
                    "http_server_config.headers.{name}: {value:?} is not one of {}",
                    allowed.join(", ")
                ),
            ));
        }
        let header = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        );
        let (Ok(header_name), Ok(header_value)) = header else {
            return Err(ConfigError::whole_file(
                file,
                format!("http_server_config.headers.{name}: not a valid header value"),
            ));
        };
        headers.push((header_name, header_value));
    }
    let users = raw.basic_auth_users.unwrap_or_default();
    if let Some((user, _)) = users.iter().find(|(_, hash)| !is_bcrypt(hash)) {
        return Err(ConfigError::whole_file(
            file,
            format!(
                "basic_auth_users.{user}: not a bcrypt hash (make one with htpasswd -nBC 10 \
                 {user}); passwords are never written in plain text"
            ),
        ));
    }
    let rate = match &raw.rate_limit {
        Some(limit) => limit.rate().map_err(|e| ConfigError::whole_file(file, e))?,
        None => None,
    };
    Ok(Settings {
        users,
        headers,
        tls,
        rate,
    })
}

/// The bcrypt cost of the first user's hash (`$2y$10$...` is 10), which the unknown users'
/// dummy hash takes too.
fn cost_of(settings: &Settings) -> u32 {
    settings
        .users
        .values()
        .next()
        .and_then(|hash| hash.get(4..6)?.parse().ok())
        .unwrap_or(bcrypt::DEFAULT_COST)
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .any(|p| hash.starts_with(p))
        && hash.len() == 60
}

/// The web config in force, read again when its file changes.
pub struct WebConfig {
    path: PathBuf,
    current: Mutex<Loaded>,
    /// Digests of right user, password and hash triples.
    verdicts: Mutex<HashSet<[u8; 32]>>,
    checks: Arc<Semaphore>,
    /// Hashes that unknown users are checked against, one per bcrypt cost in use, so that
    /// answering them takes as long as answering a wrong password: the timing does not tell
    /// which users exist.
    dummies: Mutex<HashMap<u32, String>>,
    tls_at_start: bool,
    /// The `rate_limit` tokens left; the rate is the file's as it is now.
    bucket: Mutex<Bucket>,
}

/// When a file was last changed, as far as a reader can tell: modified time and length.
type Stamp = Option<(SystemTime, u64)>;

struct Loaded {
    /// The web config and the files its TLS section names, each with its stamp when read.
    files: Vec<(PathBuf, Stamp)>,
    looked: Instant,
    settings: Result<Arc<Settings>, String>,
}

/// What a request gets from the web config.
pub enum Verdict {
    Allowed(Arc<Settings>),
    Unauthorized(Arc<Settings>),
    /// Past `rate_limit`.
    Limited(Arc<Settings>),
    /// The file is broken (its error was logged when it changed).
    Broken,
}

impl WebConfig {
    /// Reads the file at start-up; vantage does not start with a broken one.
    pub async fn load(path: &Path) -> Result<WebConfig, String> {
        let (files, settings) = read(path).await;
        let settings = settings?;
        Ok(WebConfig {
            tls_at_start: settings.tls.is_some(),
            path: path.to_path_buf(),
            current: Mutex::new(Loaded {
                files,
                looked: Instant::now(),
                settings: Ok(Arc::new(settings)),
            }),
            verdicts: Mutex::new(HashSet::new()),
            checks: Arc::new(Semaphore::new(MAX_CHECKS)),
            dummies: Mutex::new(HashMap::new()),
            bucket: Mutex::new(Bucket::new()),
        })
    }

    /// Whether the endpoints are served over TLS: decided by the file at start, as in the
    /// toolkit.
    pub fn serves_tls(&self) -> bool {
        self.tls_at_start
    }

    /// Judges a request by its `Authorization` header under the config now in the file.
    pub async fn judge(&self, authorization: Option<&HeaderValue>) -> Verdict {
        let Ok(settings) = self.settings().await else {
            return Verdict::Broken;
        };
        // Before the users, as in the toolkit: a flood is turned away without a bcrypt run.
        if let Some(rate) = settings.rate
            && !lock(&self.bucket).allow(rate, Instant::now())
        {
            return Verdict::Limited(settings);
        }
        if settings.users.is_empty() {
            return Verdict::Allowed(settings);
        }
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return Verdict::Unauthorized(settings);
        };
        let known = settings.users.get(&user).cloned();
        let hash = match &known {
            Some(hash) => hash.clone(),
            None => self.dummy(cost_of(&settings)).await,
        };
        let key = verdict_key(&user, &password, &hash);
        if known.is_some() && lock(&self.verdicts).contains(&key) {
            return Verdict::Allowed(settings);
        }
        let Ok(permit) = Arc::clone(&self.checks).try_acquire_owned() else {
            return Verdict::Unauthorized(settings);
        };
        // bcrypt is slow by design: off the async workers.
        let matches = tokio::task::spawn_blocking(move || {
            let matches = bcrypt::verify(password, &hash).unwrap_or(false);
            drop(permit);
            matches
        })
        .await
        .unwrap_or(false);
        if known.is_some() && matches {
            let mut verdicts = lock(&self.verdicts);
            if verdicts.len() >= MAX_VERDICTS {
                verdicts.clear();
            }
            verdicts.insert(key);
            Verdict::Allowed(settings)
        } else {
            Verdict::Unauthorized(settings)
        }
    }

    /// The settings in force: those last read, unless the web config or one of the files its
    /// TLS section names has changed since.
    pub async fn settings(&self) -> Result<Arc<Settings>, String> {
        let (files, settings) = {
            let mut current = lock(&self.current);
            if current.looked.elapsed() < LOOK_EVERY {
                return current.settings.clone();
            }
            current.looked = Instant::now();
            (current.files.clone(), current.settings.clone())
        };
        if unchanged(files).await {
            return settings;
        }
        let (files, settings) = read(&self.path).await;
        let settings = settings.map(Arc::new);
        if let Err(e) = &settings {
            tracing::error!(error = %e, "the web config is broken: every request answers 500 until it is fixed");
        }
        let mut current = lock(&self.current);
        *current = Loaded {
            files,
            looked: Instant::now(),
            settings: settings.clone(),
        };
        lock(&self.verdicts).clear();
        settings
    }

    /// The hash unknown users are checked against, of the `cost` the users' hashes have.
    async fn dummy(&self, cost: u32) -> String {
        if let Some(dummy) = lock(&self.dummies).get(&cost) {
            return dummy.clone();
        }
        let dummy = tokio::task::spawn_blocking(move || {
            bcrypt::hash("vantage: no such user", cost).unwrap_or_default()
        })
        .await
        .unwrap_or_default();
        lock(&self.dummies).insert(cost, dummy.clone());
        dummy
    }
}

fn stamp_of(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Whether every file still has its stamp (and could be looked at), asked off the async
/// workers, where a slow file system cannot hold them.
async fn unchanged(files: Vec<(PathBuf, Stamp)>) -> bool {
    tokio::task::spawn_blocking(move || {
        files
            .iter()
            .all(|(path, stamp)| stamp.is_some() && stamp_of(path) == *stamp)
    })
    .await
    .unwrap_or(false)
}

/// The web config's settings, read off the async workers, with the stamps of the files they
/// came from (stamped before reading, so that a change during the read is seen next time).
async fn read(path: &Path) -> (Vec<(PathBuf, Stamp)>, Result<Settings, String>) {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let stamp = stamp_of(&path);
        let mut files = vec![(path.clone(), stamp)];
        let settings = read_settings(&path);
        if let Ok(settings) = &settings {
            for file in settings.tls.iter().flat_map(|t| &t.files) {
                files.push((file.clone(), stamp_of(file)));
            }
        }
        (files, settings)
    })
    .await
    .unwrap_or_else(|e| {
        (
            Vec::new(),
            Err(format!("reading the web config failed: {e}")),
        )
    })
}

fn read_settings(path: &Path) -> Result<Settings, String> {
    let file = path.display().to_string();
    let bytes = crate::build::file::read(path, crate::build::file::NAMED_FILE)
        .map_err(|e| format!("{file}: cannot read the web config: {e}"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{file}: the web config is not UTF-8"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    parse(&text, &file, dir).map_err(|e| e.to_string())
}

/// The user and password of a `Basic` authorization.
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// A digest of what a verdict depends on: the password itself is never kept.
fn verdict_key(user: &str, password: &str, hash: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [user, password, hash] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves the value whole: a poisoned lock's content is still good.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Settings, ConfigError> {
        parse(text, "web.yml", Path::new("."))
    }

    /// `htpasswd -nbBC 4 prom secret`.
    const HASH: &str = "$2y$04$oBpDSDXniny70TwcXMeX8uxBTbjahCQMoPCRc1bu.GxV/lK7ZuPKS";

    #[test]
    fn a_node_exporter_file_parses_and_half_a_tls_section_is_refused() {
        let text = format!(
            "http_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  prom: {HASH}\n"
        );
        let settings = parsed(&text).unwrap();
        assert_eq!(settings.users.get("prom").map(String::as_str), Some(HASH));
        assert_eq!(settings.headers.len(), 1);
        let tls = parsed("tls_server_config:\n  cert_file: a.pem\n").unwrap_err();
        assert!(
            tls.to_string()
                .contains("a certificate (cert_file or cert) and its key"),
            "{tls}"
        );
    }

    #[test]
    fn empty_values_mean_unset_as_in_the_toolkit() {
        let text = "tls_server_config:\n  cert_file: \"\"\n  key_file: \"\"\n  client_auth_type: \"\"\n  cipher_suites: []\n";
        let settings = parsed(text).unwrap();
        assert!(settings.tls.is_none(), "no certificate, no TLS");
    }

    #[test]
    fn mistakes_are_named() {
        let unknown = parsed("basic_auth_user: {}\n").unwrap_err();
        assert!(unknown.to_string().starts_with("web.yml:1:1"), "{unknown}");
        let plain = parsed("basic_auth_users:\n  prom: secret\n").unwrap_err();
        assert!(plain.to_string().contains("not a bcrypt hash"), "{plain}");
        assert!(!plain.to_string().contains("secret\""), "{plain}");
        let frame = parsed("http_server_config:\n  headers:\n    X-Frame-Options: DENY\n");
        assert!(frame.unwrap_err().to_string().contains("deny, sameorigin"));
        let rate = parsed("rate_limit: {interval: 1s, burst: 0}\n").unwrap_err();
        assert!(rate.to_string().contains("rate_limit.burst"), "{rate}");
        let header = parsed("http_server_config:\n  headers:\n    Server: x\n").unwrap_err();
        assert!(
            header
                .to_string()
                .contains("only Strict-Transport-Security")
        );
    }

    /// A PEM that lost its line breaks (a secret manager, an environment variable, `helm
    /// --set`) is one long BEGIN line: its error must not repeat it, key included.
    #[test]
    fn a_pem_that_lost_its_line_breaks_is_refused_without_quoting_it() {
        let issued = rcgen::generate_simple_self_signed(vec!["vantage.test".into()]).unwrap();
        let (cert, key) = (issued.cert.pem(), issued.signing_key.serialize_pem());
        let block = |pem: &str| {
            pem.lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        };
        let flat = |pem: &str| pem.replace('\n', " ");
        let secret: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
        for (cert, key, says) in [
            (
                block(&cert),
                format!("    {}\n", flat(&key)),
                "tls_server_config.key: a BEGIN line",
            ),
            (
                format!("    {}\n", flat(&format!("{cert}{key}"))),
                block(&key),
                "tls_server_config.cert: a BEGIN line",
            ),
        ] {
            let text = format!("tls_server_config:\n  cert: |\n{cert}  key: |\n{key}");
            let err = parsed(&text).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
            assert!(err.contains("were the line breaks lost?"), "{err}");
            for line in &secret {
                assert!(!err.contains(&line[..16]), "the key leaked: {err}");
            }
        }
    }

    #[test]
    fn basic_credentials_are_read_from_the_header() {
        let value = HeaderValue::from_static("Basic cHJvbTpzZWNyZXQ6d2l0aDpjb2xvbnM=");
        assert_eq!(
            basic_credentials(&value),
            Some(("prom".into(), "secret:with:colons".into()))
        );
        assert_eq!(
            basic_credentials(&HeaderValue::from_static("Bearer x")),
            None
        );
    }
}
