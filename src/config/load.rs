//! Reading and parsing the config file into a validated [`Config`], and the files it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::builder::Builder;
use super::raw::RawConfig;
use super::sources::SourceInputs;
use super::target::{Config, LoadOptions};
use crate::build::error::{ConfigError, ConfigErrors};
use crate::build::{Context, FileRead, Reads, digest_read, file, read_bytes, read_list_bytes};

pub fn load(path: &Path, options: &LoadOptions) -> Result<Config, ConfigErrors> {
    parse(&read(path)?, &path.display().to_string(), options)
}

/// The config file's text, or an error that names the file. Only a regular file of at most
/// [`file::CONFIG_FILE`] is read, within [`file::TIME_LIMIT`].
pub fn read(path: &Path) -> Result<String, ConfigErrors> {
    file::read(path, file::CONFIG_FILE)
        .and_then(|bytes| {
            String::from_utf8(bytes).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8")
            })
        })
        .map_err(|e| {
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

/// `text` deserialized with [`parse_options`]; or the error, at its key path in `file`.
///
/// Tracking the key path (`serde_path_to_error`) costs as much as the rest of the
/// deserialization, for every key of every target, and only an error needs it: a text that
/// fails is deserialized a second time with the tracking, and fails in the same place. `start`
/// sets up what the deserializer reads besides the text (a list's budget), before each pass.
pub(super) fn deserialize<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
    start: impl Fn(),
) -> Result<T, ConfigError> {
    start();
    let untracked =
        serde_saphyr::with_deserializer_from_str_with_options(text, parse_options(), |de| {
            T::deserialize(de)
        });
    if let Ok(value) = untracked {
        return Ok(value);
    }
    start();
    let mut path = String::new();
    serde_saphyr::with_deserializer_from_str_with_options(text, parse_options(), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    })
    .map_err(|e| ConfigError::from_parse(file, &e, &path))
}

/// Parses and validates config text; `file` names it in errors.
pub fn parse(text: &str, file: &str, options: &LoadOptions) -> Result<Config, ConfigErrors> {
    parse_with_inputs(text, file, options, Reads::new(), &SourceInputs::default()).0
}

/// [`parse`], also returning the files the config names as read during the load (those read
/// before an error, when it fails). A file in `read` is taken as read already, not read again.
/// `sources` are what the `http_sd` sources fetched and every source's last good list.
pub fn parse_with_inputs(
    text: &str,
    file: &str,
    options: &LoadOptions,
    read: Reads,
    sources: &SourceInputs,
) -> (Result<Config, ConfigErrors>, Inputs) {
    parse_in(
        text,
        file,
        options,
        Context::with_reads(file, read),
        sources,
    )
}

/// [`parse_with_inputs`] with the files the config names read by `read` (see
/// [`Context::reading`]).
pub fn parse_reading(
    text: &str,
    file: &str,
    options: &LoadOptions,
    read: fn(&Path) -> FileRead,
) -> (Result<Config, ConfigErrors>, Inputs) {
    parse_in(
        text,
        file,
        options,
        Context::reading(file, read),
        &SourceInputs::default(),
    )
}

/// Parses and builds in `cx`.
fn parse_in(
    text: &str,
    file: &str,
    options: &LoadOptions,
    cx: Context,
    sources: &SourceInputs,
) -> (Result<Config, ConfigErrors>, Inputs) {
    let raw = match deserialize::<RawConfig>(text, file, || ()) {
        Ok(raw) => raw,
        Err(e) => return (Err(ConfigErrors(vec![e])), Inputs::default()),
    };
    let mut builder = Builder::new(cx);
    let config = builder.build(raw, options, sources);
    let inputs = Inputs {
        files: builder.cx.digests(),
        patterns: builder.cx.patterns(),
        lists: builder.cx.lists(),
    };
    (config, inputs)
}

/// The files a config names (tokens, CAs, client certificates), each with a digest of the
/// content it was built from, so that a reload can tell whether any of them changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    pub files: BTreeMap<PathBuf, u64>,
    /// The `file_sd` patterns, each with the files it matched.
    pub patterns: BTreeMap<PathBuf, Vec<PathBuf>>,
    /// Which of `files` are target lists, read with their own limit.
    pub lists: BTreeSet<PathBuf>,
}

impl Inputs {
    /// Reads every file again: whether each still has the content it had when the config was
    /// built (and each pattern matches the same files), and what was read, for a load that follows not to read it a second time.
    pub fn read_again(&self) -> (bool, Reads) {
        let read: Reads = self
            .files
            .keys()
            .map(|path| {
                let read = if self.lists.contains(path) {
                    read_list_bytes(path)
                } else {
                    read_bytes(path)
                };
                (path.clone(), read)
            })
            .collect();
        let unchanged = self
            .files
            .iter()
            .all(|(path, digest)| read.get(path).map(digest_read) == Some(*digest))
            && self
                .patterns
                .iter()
                .all(|(pattern, matched)| file::expand(pattern).ok().as_ref() == Some(matched));
        (unchanged, read)
    }
}
