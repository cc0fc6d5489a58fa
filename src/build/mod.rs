//! What a probe type's config builder needs from the loader, below the probe types so that
//! each type's folder can own its raw config section and its builder: located errors, files
//! read relative to the config (once per load, for the fingerprint), the keys every target
//! shares, and the provenance of inherited settings for messages.
//!
//! `config` (above the registry) parses the file, walks the targets and dispatches each to its
//! type's builder through the registry.

pub mod error;
pub mod file;
pub mod limits;
mod span;

pub use span::{Location, S};

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration;
use crate::net::dns;
use crate::net::{Host, IpVersion};
use error::ConfigError;

/// A file as one load read it: its bytes, or the error, kept so that every target naming it
/// sees the same result.
pub type FileRead = Result<Vec<u8>, (std::io::ErrorKind, String)>;

/// Files as read, by path.
pub type Reads = BTreeMap<PathBuf, FileRead>;

/// The state of one load: errors so far, and the files read.
pub struct Context<'a> {
    file: &'a str,
    /// The file errors name instead of `file`, while a discovered target list is built.
    errors_in: Option<String>,
    errors: Vec<ConfigError>,
    /// Every file the config names, as read during this load.
    files: Reads,
    /// Files read just before the load (to see whether they changed), taken instead of
    /// reading them again.
    read_before: Reads,
    /// The files the target being built reads, for its fingerprint.
    used: Vec<PathBuf>,
    /// How a file the config names is read: [`read_bytes`], but for the fuzzer.
    read: fn(&Path) -> FileRead,
    /// The file patterns expanded during this load (`file_sd`), with what each matched.
    patterns: BTreeMap<PathBuf, Vec<PathBuf>>,
    /// The files read as target lists, which have a limit of their own.
    lists: BTreeSet<PathBuf>,
    /// Whether files are read from disk: not for the fuzzer, whose `read` reads none, and so
    /// neither are folders listed nor target lists read.
    disk: bool,
}

impl<'a> Context<'a> {
    /// `file` names the config in errors, and is the folder that relative paths start from.
    pub fn new(file: &'a str) -> Self {
        Self::with(file, read_bytes, Reads::new())
    }

    /// [`Context::new`], taking the files in `read_before` as read already.
    pub fn with_reads(file: &'a str, read_before: Reads) -> Self {
        Self::with(file, read_bytes, read_before)
    }

    /// A context whose files are read by `read`. The fuzzer passes one that reads nothing from
    /// disk, so that no config it makes up can name a real file.
    pub fn reading(file: &'a str, read: fn(&Path) -> FileRead) -> Self {
        Context {
            disk: false,
            ..Self::with(file, read, Reads::new())
        }
    }

    fn with(file: &'a str, read: fn(&Path) -> FileRead, read_before: Reads) -> Self {
        Context {
            file,
            errors_in: None,
            errors: Vec::new(),
            files: Reads::new(),
            read_before,
            used: Vec::new(),
            read,
            patterns: BTreeMap::new(),
            lists: BTreeSet::new(),
            disk: true,
        }
    }

    pub fn error(&mut self, at: &Location, path: impl Into<String>, message: impl Into<String>) {
        let file = self.errors_in.as_deref().unwrap_or(self.file);
        self.errors.push(ConfigError::at(file, at, path, message));
    }

    /// Errors name `file` (a discovered target list) from here on; `None`: the config again.
    pub fn errors_in(&mut self, file: Option<String>) {
        self.errors_in = file;
    }

    /// The errors reported since there were `count`, taken out of this load's.
    pub fn take_errors_since(&mut self, count: usize) -> Vec<ConfigError> {
        self.errors.split_off(count.min(self.errors.len()))
    }

    /// A target list (`file_sd`), read as a file the config names but as [`read_list_bytes`]
    /// reads it (not when files are not read from disk).
    pub fn read_list(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.lists.insert(path.to_path_buf());
        let (before, disk, read) = (&mut self.read_before, self.disk, self.read);
        let content = self.files.entry(path.to_path_buf()).or_insert_with(|| {
            before.remove(path).unwrap_or_else(|| {
                if disk {
                    read_list_bytes(path)
                } else {
                    read(path)
                }
            })
        });
        content
            .clone()
            .map_err(|(kind, message)| std::io::Error::new(kind, message))
    }

    /// The files `pattern` matches now (see [`file::expand`]), noted for [`Context::patterns`];
    /// none when files are not read from disk.
    pub fn expand(&mut self, pattern: &Path) -> std::io::Result<Vec<PathBuf>> {
        if !self.disk {
            return Ok(Vec::new());
        }
        let found = file::expand(pattern);
        let noted = found.as_ref().map_or_else(|_| Vec::new(), Clone::clone);
        self.patterns.insert(pattern.to_path_buf(), noted);
        found
    }

    /// The files this load read as target lists.
    pub fn lists(&self) -> BTreeSet<PathBuf> {
        self.lists.clone()
    }

    /// Every pattern this load expanded, with the files it matched.
    pub fn patterns(&self) -> BTreeMap<PathBuf, Vec<PathBuf>> {
        self.patterns.clone()
    }

    /// How many errors so far: a part of the config that adds none is sound.
    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The errors in file order.
    pub fn take_errors(&mut self) -> Vec<ConfigError> {
        self.errors.sort_by_key(|e| (e.line, e.column));
        std::mem::take(&mut self.errors)
    }

    /// A path from the config, relative to the config file's folder (as Prometheus does).
    pub fn relative(&self, path: &str) -> PathBuf {
        let folder = Path::new(self.file).parent().unwrap_or(Path::new(""));
        folder.join(path)
    }

    /// A file the target being built reads. Each file is read once per load, however many
    /// targets use it, and the fingerprint hashes these very bytes: a file that changes during
    /// a load cannot leave a target running old content under a new fingerprint.
    pub fn read_file(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.used.push(path.to_path_buf());
        let (before, read) = (&mut self.read_before, self.read);
        let content = self
            .files
            .entry(path.to_path_buf())
            .or_insert_with(|| before.remove(path).unwrap_or_else(|| read(path)));
        content
            .clone()
            .map_err(|(kind, message)| std::io::Error::new(kind, message))
    }

    /// Starts a target: the files it reads are counted from here.
    pub fn start_target(&mut self) {
        self.used.clear();
    }

    /// Hashes the files the current target read, path and content.
    pub fn hash_used(&self, hasher: &mut DefaultHasher) {
        for path in &self.used {
            path.hash(hasher);
            self.files.get(path).hash(hasher);
        }
    }

    /// Every file this load read, with a digest of what it read.
    pub fn digests(&self) -> BTreeMap<PathBuf, u64> {
        self.files
            .iter()
            .map(|(path, read)| (path.clone(), digest_read(read)))
            .collect()
    }

    /// The target's `host`, a name or an IP literal: `None` after reporting it missing (with
    /// `missing`) or invalid.
    pub fn host(&mut self, common: &Common, missing: &str) -> Option<Host> {
        let path = common.path;
        let Some(h) = common.host else {
            self.error(&common.at, format!("{path}.host"), missing);
            return None;
        };
        Host::parse(&h.value)
            .map_err(|e| self.error(&h.referenced, format!("{path}.host"), e))
            .ok()
    }

    /// [`Context::host`] as a place to connect to or ping: also refuses addresses that name no
    /// single host (see [`Host::check_destination`]).
    pub fn destination(&mut self, common: &Common, missing: &str) -> Option<Host> {
        let host = self.host(common, missing)?;
        if let (Err(e), Some(h)) = (host.check_destination(), common.host) {
            self.error(&h.referenced, format!("{}.host", common.path), e);
            return None;
        }
        Some(host)
    }
}

/// A file the config names, read as [`file::read`] reads it: a regular file of at most
/// [`file::NAMED_FILE`], within [`file::TIME_LIMIT`].
pub fn read_bytes(path: &Path) -> FileRead {
    file::read(path, file::NAMED_FILE).map_err(|e| (e.kind(), e.to_string()))
}

/// A target list (`file_sd`), read as [`file::read`] reads it, up to [`file::TARGET_LIST`].
pub fn read_list_bytes(path: &Path) -> FileRead {
    file::read(path, file::TARGET_LIST).map_err(|e| (e.kind(), e.to_string()))
}

pub fn digest_read(read: &FileRead) -> u64 {
    let mut hasher = DefaultHasher::new();
    read.hash(&mut hasher);
    hasher.finish()
}

/// What every target has, as the loader found it, for its type's builder.
pub struct Common<'r> {
    /// The target's key path, such as `targets[3]`.
    pub path: &'r str,
    /// Where the target's entry starts: missing keys are reported there.
    pub at: Location,
    pub host: Option<&'r S<String>>,
    pub port: Option<&'r S<i64>>,
    pub url: Option<&'r S<String>>,
    pub ip_version: IpVersion,
    pub timeout: Setting<Duration>,
    /// `dns.server` as the resolver of the host, on types that connect to a host: `Some(None)`
    /// for the system's, `None` after reporting errors.
    pub resolver: Option<Option<dns::Server>>,
}

/// Where a setting's value came from, so an error about it can point at the right line.
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    BuiltIn,
    Defaults(Location),
    Target(Location),
}

#[derive(Debug, Clone, Copy)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
}

pub fn builtin<T>(value: T) -> Setting<T> {
    Setting {
        value,
        origin: Origin::BuiltIn,
    }
}

/// A duration setting for a message reported in a scope where `local` settings were written:
/// inherited values say where they come from.
pub fn describe(s: &Setting<Duration>, local: fn(&Origin) -> bool) -> String {
    let value = duration::format(s.value);
    match s.origin {
        o if local(&o) => value,
        Origin::BuiltIn => format!("{value} (the built-in default)"),
        Origin::Defaults(at) => format!("{value} (from defaults, line {})", at.line()),
        Origin::Target(_) => value,
    }
}

pub fn in_target(o: &Origin) -> bool {
    matches!(o, Origin::Target(_))
}

pub fn in_defaults(o: &Origin) -> bool {
    matches!(o, Origin::Defaults(_))
}

/// The regex crate's syntax errors span several lines with a caret diagram; keep the last one.
pub fn regex_message(err: &regex::Error) -> String {
    let text = err.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(&text);
    last.trim().trim_start_matches("error: ").to_string()
}

/// Hashes `value` as serialized, which sees every setting and ignores layout and comments.
pub fn hash_serialized(hasher: &mut DefaultHasher, value: &impl serde::Serialize) {
    // The text whole, then hashed in one write: the serializer writes a few bytes at a time,
    // and each write into the hasher costs more than its bytes (a third of a target's build,
    // fed piece by piece). Plain data into a Vec: serializing cannot fail.
    let mut text = Vec::with_capacity(512);
    let _ = serde_json::to_writer(&mut text, value);
    hasher.write(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_read_before_the_load_is_not_read_again() {
        let path = PathBuf::from("/vantage-test/not-on-disk/token");
        let before = Reads::from([(path.clone(), Ok(b"read before".to_vec()))]);
        let mut cx = Context::with_reads("exporter.yml", before);
        assert_eq!(cx.read_file(&path).unwrap(), b"read before");
        assert_eq!(cx.digests().len(), 1, "still one of the load's files");
        let other = PathBuf::from("/vantage-test/not-on-disk/other");
        let missing = cx.read_file(&other).unwrap_err();
        assert_eq!(
            missing.kind(),
            std::io::ErrorKind::NotFound,
            "others are read"
        );
        let unused = Context::with_reads("exporter.yml", Reads::from([(path, Ok(vec![]))]));
        assert!(
            unused.digests().is_empty(),
            "a file no longer named is not the load's"
        );
    }
}
