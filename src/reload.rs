//! Config reloads: what triggers them, how a new file replaces the running config, and the
//! state that vantage's own metrics report about it.
//!
//! A reload reads and validates the whole file before touching anything. A bad file leaves the
//! running config as it was; a good one is applied as a diff by the scheduler, so targets that
//! did not change keep their schedule, latest results and counters. Three things trigger one:
//! a change of the file's content (seen by watching its folder), SIGHUP, and `POST /-/reload`.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout_at};
use tracing::{debug, error, info, warn};

use crate::config::{self, Config, ConfigErrors, LoadOptions};
use crate::scheduler::{Changes, Runner, Scheduler, Shared};

/// A burst of file events (an editor's write and rename, a ConfigMap's symlink swap) has ended
/// once the folder has been quiet this long.
const QUIET: Duration = Duration::from_millis(200);
/// A folder that never goes quiet is still read this often.
const SETTLE_LIMIT: Duration = Duration::from_secs(2);

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The config's folder changed. The file is read, and applied only if its content differs
    /// from the last one read.
    File,
    /// SIGHUP: always rebuilds, so a changed CA or token file that the config names is read.
    Signal,
    /// `POST /-/reload`: always rebuilds, like SIGHUP.
    Api,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::File => "file change",
            Trigger::Signal => "SIGHUP",
            Trigger::Api => "POST /-/reload",
        }
    }
}

/// A reload to perform, and where to send its result (`POST /-/reload` waits for it).
#[derive(Debug)]
pub struct Request {
    pub trigger: Trigger,
    pub reply: Option<oneshot::Sender<Result<Reloaded, String>>>,
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// A file event, but the content is the one last read: nothing to do, nothing counted.
    Unchanged,
    Applied(Changes),
}

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
    /// Digest of the content last read, good or bad; `None` after the file could not be read.
    seen: Option<u64>,
}

/// A config read and validated at start-up, not yet running.
pub struct Initial {
    pub config: Config,
    digest: u64,
}

/// Reads and validates the config at start-up; an error here stops vantage.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Initial, ConfigErrors> {
    let text = config::read(path)?;
    let config = config::parse(&text, &path.display().to_string(), options)?;
    Ok(Initial {
        config,
        digest: digest(&text),
    })
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
    ) -> Self {
        let mut scheduler = Scheduler::new(runner, shared);
        scheduler.apply(&initial.config).await;
        Reloader {
            path: path.to_path_buf(),
            options,
            scheduler,
            status,
            seen: Some(initial.digest),
        }
    }

    /// Reloads the config file. On error the running config is untouched; the error text names
    /// file, line, column and key of every mistake.
    pub async fn reload(&mut self, trigger: Trigger) -> Result<Reloaded, String> {
        let file = self.path.display().to_string();
        let path = self.path.clone();
        let options = self.options.clone();
        let unless = self.seen.filter(|_| trigger == Trigger::File);
        // Parsing thousands of targets takes a while: off the runtime's threads, so that runs
        // keep starting on time meanwhile.
        let read = tokio::task::spawn_blocking(move || read_unless(&path, &options, unless))
            .await
            .unwrap_or_else(|e| Read::Bad {
                errors: ConfigErrors(vec![config::ConfigError::whole_file(
                    &file,
                    format!("reading the config failed: {e}"),
                )]),
                digest: None,
            });
        let parsed = match read {
            Read::Unchanged => {
                debug!(file, "config file event, content unchanged: not reloading");
                return Ok(Reloaded::Unchanged);
            }
            Read::Bad { errors, digest } => {
                self.seen = digest;
                Err(errors)
            }
            Read::Good { config, digest } => {
                self.seen = Some(digest);
                Ok(config)
            }
        };
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

/// Logs which targets this instance leaves to other locations.
pub fn log_elsewhere(config: &Config) {
    if !config.elsewhere.is_empty() {
        info!(targets = %config.elsewhere.join(","), "not probing targets meant for other locations");
    }
}

/// The outcome of reading the config file for a reload.
enum Read {
    /// The content has the digest it was asked to skip.
    Unchanged,
    /// `digest` is `None` when the file could not be read.
    Bad {
        errors: ConfigErrors,
        digest: Option<u64>,
    },
    Good {
        config: Config,
        digest: u64,
    },
}

/// Reads and validates the config, unless its content has the digest `unless`.
fn read_unless(path: &Path, options: &LoadOptions, unless: Option<u64>) -> Read {
    let text = match config::read(path) {
        Ok(text) => text,
        Err(errors) => {
            return Read::Bad {
                errors,
                digest: None,
            };
        }
    };
    let digest = digest(&text);
    if unless == Some(digest) {
        return Read::Unchanged;
    }
    match config::parse(&text, &path.display().to_string(), options) {
        Ok(config) => Read::Good { config, digest },
        Err(errors) => Read::Bad {
            errors,
            digest: Some(digest),
        },
    }
}

fn digest(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// Watches the config file's folder and sends a [`Trigger::File`] request after each burst of
/// changes, for as long as `requests` is open.
///
/// The folder, not the file: an editor that writes a new file and renames it over the old one,
/// and a Kubernetes ConfigMap update (which renames a `..data` symlink), replace the file, and a
/// watch on the file itself would see nothing and then go dead. If the config is a symlink into
/// another folder, that folder is watched too, and followed when the link moves.
pub fn watch(path: &Path, requests: mpsc::Sender<Request>) -> notify::Result<()> {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if relevant(event.kind) => {
                let _ = events_tx.send(());
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "watching the config folder"),
        })?;
    let folder = folder_of(path);
    watcher.watch(&folder, RecursiveMode::NonRecursive)?;
    let path = path.to_path_buf();
    tokio::spawn(async move {
        let mut linked = follow_link(&mut watcher, &path, &folder, None);
        while events.recv().await.is_some() {
            let settle_by = Instant::now() + SETTLE_LIMIT;
            loop {
                let quiet_until = (Instant::now() + QUIET).min(settle_by);
                match timeout_at(quiet_until, events.recv()).await {
                    Ok(Some(())) => {}
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            linked = follow_link(&mut watcher, &path, &folder, linked);
            let request = Request {
                trigger: Trigger::File,
                reply: None,
            };
            if requests.send(request).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// Changes to a folder entry; opening and reading (vantage's own reads included) are not.
fn relevant(kind: EventKind) -> bool {
    match kind {
        EventKind::Access(access) => access == AccessKind::Close(AccessMode::Write),
        _ => true,
    }
}

fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Keeps a watch on the folder the config's symlinks lead to, when that is not `folder`;
/// returns the folder now watched that way.
fn follow_link(
    watcher: &mut RecommendedWatcher,
    path: &Path,
    folder: &Path,
    linked: Option<PathBuf>,
) -> Option<PathBuf> {
    let real = std::fs::canonicalize(path)
        .ok()
        .map(|p| folder_of(&p))
        .filter(|real| std::fs::canonicalize(folder).ok().as_ref() != Some(real));
    if real == linked {
        return linked;
    }
    if let Some(old) = &linked {
        // The old folder may be gone already (a ConfigMap's previous `..2024_...` version).
        let _ = watcher.unwatch(old);
    }
    match real {
        Some(real) => match watcher.watch(&real, RecursiveMode::NonRecursive) {
            Ok(()) => Some(real),
            Err(e) => {
                warn!(folder = %real.display(), error = %e, "cannot watch the folder the config links to");
                None
            }
        },
        None => None,
    }
}
