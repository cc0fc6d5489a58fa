//! The bodies of the fuzz targets, one per parser of bytes from the network or the config:
//! cargo-fuzz runs them from `fuzz/` (README, "Fuzzing"), and the unit tests here run them
//! over the committed corpora and regression inputs on stable, in every test run.
//!
//! Each body lives beside the code it drives, where it can reach the private steps that a
//! probe takes with what it reads; this module lists them. A body panics on a broken
//! invariant, which the fuzzer reports as a crash.
//!
//! Only in tests and in builds with the `fuzzing` feature: the exporter carries none of it.

use std::path::Path;

use crate::build::FileRead;
use crate::config::{LoadOptions, parse_reading};
use crate::shard::Shard;

pub use crate::probe::dns::fuzz::dns;
pub use crate::probe::http::fuzz::location;
pub use crate::probe::tcp::fuzz::expect;
pub use crate::probe::tcp::starttls::fuzz::{ldap_ber, starttls};
pub use crate::tls::fuzz::certificates;

/// A target's body: one input, a panic on a broken invariant.
pub type Body = fn(&[u8]);

/// Every target by the name of its file in `fuzz/fuzz_targets/` and its corpus folder.
pub const TARGETS: &[(&str, Body)] = &[
    ("config", config),
    ("certificates", certificates),
    ("dns", dns),
    ("ldap_ber", ldap_ber),
    ("starttls", starttls),
    ("location", location),
    ("expect", expect),
];

/// Where the fuzzed config pretends to be: files it names relative to itself are looked up
/// here, among [`FILES`] only.
const CONFIG: &str = "/vantage-fuzz/exporter.yml";

/// The files a fuzzed config can name (relative to [`CONFIG`]): the corpus's root, a client
/// certificate with its key, a token. Nothing else is read, and no file from disk.
const FILES: &[(&str, &[u8])] = &[
    ("/vantage-fuzz/ca.pem", crate::tls::fuzz::CA_PEM),
    (
        "/vantage-fuzz/client.pem",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/files/client.pem"
        )),
    ),
    (
        "/vantage-fuzz/client.key",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/files/client.key"
        )),
    ),
    ("/vantage-fuzz/token", b"Bearer fuzz-token\n"),
];

fn read_fuzz_file(path: &Path) -> FileRead {
    FILES
        .iter()
        .find(|(name, _)| Path::new(name) == path)
        .map(|(_, bytes)| bytes.to_vec())
        .ok_or((
            std::io::ErrorKind::NotFound,
            "No such file or directory (os error 2)".to_string(),
        ))
}

/// One input: a config file, loaded as `check-config` loads it and then summarised as it
/// prints it.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let options = LoadOptions {
        location: None,
        every_location: false,
        shard: Shard::WHOLE,
    };
    let (result, _) = parse_reading(text, CONFIG, &options, read_fuzz_file);
    match result {
        Ok(config) => {
            let mut names: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), config.targets.len(), "target names are unique");
            for target in &config.targets {
                let keys: Vec<&str> = target.labels.iter().map(|(k, _)| k).collect();
                assert_eq!(keys[..4], ["name", "probe", "target", "location"]);
            }
            let summary = config.summary();
            assert!(summary.lines().count() > config.targets.len());
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            // Every error points into the file, on a line of its own. YAML breaks lines at CR
            // LF, LF and a lone CR alike.
            let breaks = text.replace("\r\n", "\n").matches(['\r', '\n']).count();
            let lines = breaks as u64 + 1;
            for error in &errors.0 {
                assert!(error.line <= lines, "{error}");
                assert!(!error.message.contains('\n'), "{error}");
            }
            assert!(!errors.to_string().is_empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn folder(kind: &str, target: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz")
            .join(kind)
            .join(target)
    }

    /// The inputs of a target under `fuzz/<kind>/`, sorted; none when the folder is missing.
    fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let Ok(entries) = std::fs::read_dir(folder(kind, target)) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let bytes = std::fs::read(&path).unwrap();
                (path, bytes)
            })
            .collect()
    }

    #[test]
    fn every_fuzz_target_passes_its_corpus_and_regressions() {
        for &(name, body) in TARGETS {
            let corpus = inputs("corpus", name);
            assert!(corpus.len() >= 3, "{name} has a corpus of {}", corpus.len());
            for (path, bytes) in corpus.iter().chain(&inputs("regressions", name)) {
                let run = std::panic::catch_unwind(|| body(bytes));
                assert!(run.is_ok(), "{name} failed on {}", path.display());
            }
        }
    }

    #[test]
    fn every_fuzz_target_file_is_listed() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
            .collect();
        files.sort();
        let mut listed: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(files, listed);
    }
}
