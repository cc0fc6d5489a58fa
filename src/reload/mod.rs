//! Config reloads: what triggers them, how a new file replaces the running config, and the
//! state that vantage's own metrics report about it.
//!
//! A reload reads and validates the whole file before touching anything. A bad file leaves the
//! running config as it was; a good one is applied as a diff by the scheduler, so targets that
//! did not change keep their schedule, latest results and counters. Three things trigger one:
//! a change of the content of the file or of a file it names (see `watch`), SIGHUP, and
//! `POST /-/reload`.
//!
//! Files are read as `build::file` reads them (regular files only, capped in size, each within
//! a time limit), so a reload cannot wait forever on a FIFO or a hung mount, and the caller
//! may drop a reload in progress to stop at once.

mod request;
mod watch;

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use tokio::sync::mpsc;
use tracing::{debug, error, info};

use crate::build::Reads;
use crate::config::{
    self, Config, ConfigErrors, Inputs, ListState, Listed, LoadOptions, SourceInputs,
};
use crate::scheduler::{Runner, Scheduler, Shared};
pub use request::{Reloaded, Request, Trigger};
use watch::Watched;

/// How the config loads have gone, for `vantage_config_*`.
#[derive(Debug)]
pub struct ReloadStatus {
    state: Mutex<StatusState>,
}

/// A copy of the reload state at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusState {
    pub last_successful: bool,
    /// When the running config was loaded.
    pub last_success: SystemTime,
    /// Reloads after start-up, by result.
    pub successes: u64,
    pub failures: u64,
}

impl ReloadStatus {
    /// The state after the config loaded at start-up.
    pub fn new(loaded: SystemTime) -> Self {
        ReloadStatus {
            state: Mutex::new(StatusState {
                last_successful: true,
                last_success: loaded,
                successes: 0,
                failures: 0,
            }),
        }
    }

    pub fn get(&self) -> StatusState {
        *self.lock()
    }

    fn succeeded(&self) {
        let mut state = self.lock();
        state.last_successful = true;
        state.last_success = SystemTime::now();
        state.successes += 1;
    }

    fn failed(&self) {
        let mut state = self.lock();
        state.last_successful = false;
        state.failures += 1;
    }

    fn lock(&self) -> MutexGuard<'_, StatusState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running config: its file, the scheduler running its targets, and the reload state.
pub struct Reloader<R: Runner> {
    path: PathBuf,
    options: LoadOptions,
    scheduler: Scheduler<R>,
    status: Arc<ReloadStatus>,
    /// What the last read saw, good or bad.
    seen: Seen,
    /// The files the running config names, which stay watched while a bad file waits.
    running: Inputs,
    /// The files to watch besides the config: those of the running config and of the last try.
    watched: tokio::sync::watch::Sender<Watched>,
    /// Told of every config that is about to run (the push takes its receivers from it).
    on_apply: Option<OnApply>,
    /// What the `http_sd` pollers fetched last, by source.
    fetched: Fetched,
    /// Each source's last list without mistakes, which runs while its newest has some.
    last_good: BTreeMap<String, Vec<Listed>>,
}

/// The lists the `http_sd` pollers fetched last, by source name: they write, loads read.
pub type Fetched = Arc<Mutex<BTreeMap<String, Listed>>>;

/// See [`Reloader::on_apply`].
pub type OnApply = Box<dyn Fn(&Config) + Send + Sync>;

/// The content a load was built from: the config text and the files it names; or the error
/// that kept the config from being read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    text: u64,
    inputs: Inputs,
}

impl Seen {
    /// A read that failed with `errors`: the same failure again is nothing new.
    fn failed(errors: &ConfigErrors) -> Seen {
        Seen {
            text: digest(&format!("unreadable: {errors}")),
            inputs: Inputs::default(),
        }
    }
}

/// A config read and validated at start-up, not yet running.
pub struct Initial {
    pub config: Config,
    seen: Seen,
}

/// Reads and validates the config at start-up; an error here stops vantage.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Initial, ConfigErrors> {
    let inputs = SourceInputs::default();
    let (config, seen) = parse(path, options, &config::read(path)?, Reads::new(), &inputs);
    Ok(Initial {
        config: config?,
        seen,
    })
}

/// Validates the config text read from `path`, noting what it was built from.
fn parse(
    path: &Path,
    options: &LoadOptions,
    text: &str,
    read_before: Reads,
    sources: &SourceInputs,
) -> (Result<Config, ConfigErrors>, Seen) {
    let (config, inputs) = config::parse_with_inputs(
        text,
        &path.display().to_string(),
        options,
        read_before,
        sources,
    );
    let seen = Seen {
        text: digest(text),
        inputs,
    };
    (config, seen)
}

impl<R: Runner> Reloader<R> {
    /// Starts probing the config loaded at start-up.
    pub async fn start(
        path: &Path,
        options: LoadOptions,
        initial: Initial,
        runner: Arc<R>,
        shared: Shared,
        status: Arc<ReloadStatus>,
        fetched: Fetched,
    ) -> Self {
        let mut scheduler = Scheduler::new(runner, shared);
        scheduler.apply(&initial.config).await;
        let running = initial.seen.inputs.clone();
        let (watched, _) = tokio::sync::watch::channel(Watched::of(&[&running]));
        let mut last_good = BTreeMap::new();
        remember(&mut last_good, &initial.config);
        log_sources(&initial.config, Trigger::File);
        Reloader {
            path: path.to_path_buf(),
            options,
            scheduler,
            status,
            seen: initial.seen,
            running,
            watched,
            on_apply: None,
            fetched,
            last_good,
        }
    }

    /// Calls `hook` with every reloaded config, just before its targets start.
    pub fn on_apply(&mut self, hook: OnApply) {
        self.on_apply = Some(hook);
    }

    /// Watches the config and the files it names, and sends a [`Trigger::File`] request to
    /// `requests` when any of them changes, and every minute.
    pub fn watch(&self, requests: mpsc::Sender<Request>) {
        watch::spawn(&self.path, self.watched.subscribe(), requests);
    }

    /// Reloads the config file. On error the running config is untouched; the error text names
    /// file, line, column and key of every mistake.
    pub async fn reload(&mut self, trigger: Trigger) -> Result<Reloaded, String> {
        let read = self.read(trigger).await;
        self.apply(trigger, read).await
    }

    /// The first half of [`reload`](Self::reload), which may wait on slow files and can be
    /// given up (for a signal to stop) without changing anything: reads and validates the
    /// config, unless a file event finds nothing changed.
    pub async fn read(&self, trigger: Trigger) -> ReadConfig {
        let file = self.path.display().to_string();
        let path = self.path.clone();
        let options = self.options.clone();
        let unless = (trigger == Trigger::File).then(|| self.seen.clone());
        let sources = SourceInputs {
            fetched: self
                .fetched
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            last_good: self.last_good.clone(),
        };
        // Parsing thousands of targets takes a while: off the runtime's threads, so that runs
        // keep starting on time meanwhile.
        let read =
            tokio::task::spawn_blocking(move || read_unless(&path, &options, unless, &sources))
                .await
                .unwrap_or_else(|e| {
                    let errors = ConfigErrors(vec![config::ConfigError::whole_file(
                        &file,
                        format!("reading the config failed: {e}"),
                    )]);
                    let seen = Seen::failed(&errors);
                    Read::Bad { errors, seen }
                });
        ReadConfig(read)
    }

    /// The second half of [`reload`](Self::reload): runs what [`read`](Self::read) found, or
    /// reports why it cannot. Quick, and not to be cut short: it changes the running targets.
    pub async fn apply(&mut self, trigger: Trigger, read: ReadConfig) -> Result<Reloaded, String> {
        let file = self.path.display().to_string();
        let parsed = match read.0 {
            Read::Unchanged => {
                debug!(
                    file,
                    "config files unchanged (or the config is empty): not reloading"
                );
                return Ok(Reloaded::Unchanged);
            }
            Read::Bad { errors, seen } => {
                self.seen = seen;
                Err(errors)
            }
            Read::Good { config, seen } => {
                self.running = seen.inputs.clone();
                self.seen = seen;
                Ok(config)
            }
        };
        let want = Watched::of(&[&self.running, &self.seen.inputs]);
        self.watched.send_if_modified(|watched| {
            let modified = *watched != want;
            *watched = want;
            modified
        });
        let config = match parsed {
            Ok(config) => config,
            Err(errors) => {
                self.status.failed();
                for e in &errors.0 {
                    error!(
                        trigger = trigger.as_str(),
                        error = %e,
                        "config reload failed; the previous config keeps running"
                    );
                }
                return Err(errors.to_string());
            }
        };
        remember(&mut self.last_good, &config);
        log_sources(&config, trigger);
        if let Some(hook) = &self.on_apply {
            hook(&config);
        }
        let changes = self.scheduler.apply(&config).await;
        self.status.succeeded();
        info!(
            trigger = trigger.as_str(),
            file,
            targets = config.targets.len(),
            added = changes.added,
            changed = changes.changed,
            removed = changes.removed,
            unchanged = changes.unchanged,
            location = %config.location,
            "config reloaded"
        );
        log_elsewhere(&config);
        Ok(Reloaded::Applied(changes))
    }

    /// Stops every target.
    pub async fn stop(self) {
        self.scheduler.stop().await;
    }
}

/// Keeps each source's newest list that built as its last good one, and forgets the sources
/// the config no longer has.
fn remember(last_good: &mut BTreeMap<String, Vec<Listed>>, config: &Config) {
    last_good.retain(|name, _| config.sources.iter().any(|s| s.source.name == *name));
    for report in &config.sources {
        if let Some(good) = &report.good {
            last_good.insert(report.source.name.clone(), good.clone());
        }
    }
}

/// Logs the mistakes of each source's newest list, and which list runs instead.
fn log_sources(config: &Config, trigger: Trigger) {
    for report in &config.sources {
        let kept = match report.state {
            ListState::Newest => continue,
            ListState::LastGood => "its last good list keeps running",
            ListState::Empty => "it has no good list yet, so it gives no targets",
        };
        for e in &report.errors {
            error!(
                trigger = trigger.as_str(),
                source = %report.source.name,
                error = %e,
                "target source's list has a mistake; {kept}"
            );
        }
    }
}

/// Logs which targets this instance leaves to other locations.
pub fn log_elsewhere(config: &Config) {
    if !config.elsewhere.is_empty() {
        info!(targets = %config.elsewhere.join(","), "not probing targets meant for other locations");
    }
}

/// A config read for a reload, for [`Reloader::apply`].
pub struct ReadConfig(Read);

/// The outcome of reading the config file for a reload.
#[derive(Debug)]
enum Read {
    Unchanged,
    Bad { errors: ConfigErrors, seen: Seen },
    Good { config: Config, seen: Seen },
}

/// Reads and validates the config, unless (for a file event, `unless` being what the last read
/// saw) nothing changed since: the same text and files, or the same failure to read. A file
/// event that finds the config empty takes it for one being written and waits for the next.
fn read_unless(
    path: &Path,
    options: &LoadOptions,
    unless: Option<Seen>,
    sources: &SourceInputs,
) -> Read {
    let text = match config::read(path) {
        Ok(text) => text,
        Err(errors) => {
            let seen = Seen::failed(&errors);
            if unless.as_ref() == Some(&seen) {
                return Read::Unchanged;
            }
            return Read::Bad { errors, seen };
        }
    };
    let mut read_before = Reads::new();
    if let Some(last) = unless {
        if text.is_empty() {
            return Read::Unchanged;
        }
        if last.text == digest(&text) {
            let (unchanged, read) = last.inputs.read_again();
            if unchanged {
                return Read::Unchanged;
            }
            read_before = read;
        }
    }
    let (config, seen) = parse(path, options, &text, read_before, sources);
    match config {
        Ok(config) => Read::Good { config, seen },
        Err(errors) => Read::Bad { errors, seen },
    }
}

fn digest(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unchanged(read: &Read) -> bool {
        matches!(read, Read::Unchanged)
    }

    #[test]
    fn file_events_skip_what_was_seen_and_explicit_reloads_never_do() {
        let dir = std::env::temp_dir().join(format!("vantage-read-unless-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("exporter.yml");
        let options = LoadOptions::default();
        let none = SourceInputs::default();
        std::fs::write(&path, "targets: []\n").unwrap();
        let Read::Good { seen, .. } = read_unless(&path, &options, None, &none) else {
            panic!("a good file")
        };
        assert!(unchanged(&read_unless(
            &path,
            &options,
            Some(seen.clone()),
            &none
        )));
        assert!(matches!(
            read_unless(&path, &options, None, &none),
            Read::Good { .. }
        ));

        // A missing file is a failure once; the same failure again is nothing new.
        std::fs::remove_file(&path).unwrap();
        let Read::Bad { seen: missing, .. } = read_unless(&path, &options, Some(seen), &none)
        else {
            panic!("a missing file")
        };
        assert!(unchanged(&read_unless(
            &path,
            &options,
            Some(missing.clone()),
            &none
        )));
        // An empty file, even right after a failure, is a file being written.
        std::fs::write(&path, "").unwrap();
        assert!(unchanged(&read_unless(
            &path,
            &options,
            Some(missing),
            &none
        )));
        assert!(
            matches!(read_unless(&path, &options, None, &none), Read::Good { .. }),
            "an explicit reload applies an empty config"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
