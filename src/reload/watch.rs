//! Watching the config file, and the files it names, for changes.
//!
//! inotify watches inodes. Replacing a file (an editor's write and rename, a Kubernetes
//! ConfigMap or Secret update, which renames a `..data` symlink) leaves a watch on the file
//! itself looking at an inode nobody uses any more. So vantage watches the *folders* along the
//! way: the folder of the path it was given, of every symlink the path goes through, and of the
//! file it ends at; and the file itself as well, which is the only way to see in-place edits of
//! a file bind-mounted into a container. Only events about those entries count, and the set is
//! worked out again after every burst of changes, so it follows links that move and folders
//! that are replaced.
//!
//! A burst is read once it has been quiet for a moment, and not while a writer still has the
//! file open (a slow `cat > exporter.yml` is not read half written). A periodic check catches
//! anything inotify cannot see, such as a change on a network file system.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, timeout_at};
use tracing::warn;

use super::request::{Request, Trigger};
use crate::config::Inputs;

/// A burst of events has ended once the watched entries have been quiet this long.
const QUIET: Duration = Duration::from_millis(200);
/// How long a writer may keep the file open without writing before it is read anyway.
const WRITER_LIMIT: Duration = Duration::from_secs(10);
/// A burst that never ends (an entry changing all the time) is read after this long anyway.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// How often the files are looked at without any event.
const RECHECK: Duration = Duration::from_secs(60);
/// Symlinks followed per path at most, as the kernel does (ELOOP).
const MAX_LINKS: usize = 40;

/// What to watch besides the config: the files it names, and the folders of its file patterns,
/// where any entry that comes or goes counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watched {
    files: Vec<PathBuf>,
    folders: Vec<PathBuf>,
}

impl Watched {
    /// What the loads that read `inputs` read.
    pub fn of(inputs: &[&Inputs]) -> Watched {
        let files: BTreeSet<PathBuf> = inputs
            .iter()
            .flat_map(|i| i.files.keys().chain(i.patterns.values().flatten()))
            .cloned()
            .collect();
        let folders: BTreeSet<PathBuf> = inputs
            .iter()
            .flat_map(|i| i.patterns.keys())
            .filter_map(|p| p.parent())
            // `*.json` beside a config named relatively: the current folder.
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .map(Path::to_path_buf)
            .collect();
        Watched {
            files: files.into_iter().collect(),
            folders: folders.into_iter().collect(),
        }
    }
}

/// The paths whose events count: entries, and every entry in the folders.
#[derive(Default)]
struct Relevant {
    entries: HashSet<PathBuf>,
    folders: HashSet<PathBuf>,
}

impl Relevant {
    fn contains(&self, path: &Path) -> bool {
        self.entries.contains(path) || path.parent().is_some_and(|p| self.folders.contains(p))
    }
}

/// What an event says about the watched entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// Data written into a file that is still open.
    Write,
    /// A file open for writing was closed.
    Closed,
    /// An entry was created, removed, renamed or had its attributes changed.
    Other,
    /// Events may have been lost (the kernel queue overflowed): look anyway.
    Lost,
}

/// Starts watching `config` and the `files` it names (updated as reloads name new ones), and
/// sends a [`Trigger::File`] request after each burst of changes, at start, after the set of
/// files changes, and every [`RECHECK`], for as long as `requests` is open. Without inotify
/// (its limits reached, say) only the periodic check runs, and the log says so.
pub fn spawn(config: &Path, files: watch::Receiver<Watched>, requests: mpsc::Sender<Request>) {
    let relevant: Arc<Mutex<Relevant>> = Arc::default();
    let (signals_tx, signals) = mpsc::unbounded_channel();
    let filter = Arc::clone(&relevant);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let signal = match event {
            Err(e) => {
                warn!(error = %e, "watching the config");
                Some(Signal::Lost)
            }
            Ok(event) if event.need_rescan() => Some(Signal::Lost),
            Ok(event) => {
                let relevant = filter.lock().unwrap_or_else(PoisonError::into_inner);
                classify(event.kind).filter(|_| event.paths.iter().any(|p| relevant.contains(p)))
            }
        };
        if let Some(signal) = signal {
            let _ = signals_tx.send(signal);
        }
    });
    let plan = match watcher {
        Ok(watcher) => Some(Plan {
            watcher,
            watched: BTreeMap::new(),
            failing: HashSet::new(),
            relevant,
        }),
        Err(e) => {
            warn!(
                config = %config.display(),
                error = %e,
                "cannot watch the config for changes: looking every minute; reload with SIGHUP or POST /-/reload for sooner"
            );
            None
        }
    };
    let config = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
    tokio::spawn(run(config, files, requests, plan, signals));
}

async fn run(
    config: PathBuf,
    mut files: watch::Receiver<Watched>,
    requests: mpsc::Sender<Request>,
    mut plan: Option<Plan>,
    mut signals: mpsc::UnboundedReceiver<Signal>,
) {
    let update = |plan: &mut Option<Plan>, files: &Watched| {
        if let Some(plan) = plan {
            plan.update(&config, files);
        }
    };
    update(&mut plan, &files.borrow_and_update());
    let mut recheck = tokio::time::interval_at(Instant::now() + RECHECK, RECHECK);
    recheck.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // A change made while vantage was starting, before this watch existed, is seen now.
    if !request(&requests).await {
        return;
    }
    loop {
        tokio::select! {
            signal = signals.recv(), if plan.is_some() => {
                let Some(signal) = signal else { return };
                if !settle(signal, &mut signals).await {
                    return;
                }
                update(&mut plan, &files.borrow());
            }
            changed = files.changed() => {
                if changed.is_err() {
                    return;
                }
                // A newly named file may have changed before its watch existed.
                update(&mut plan, &files.borrow_and_update());
            }
            _ = recheck.tick() => update(&mut plan, &files.borrow()),
        }
        if !request(&requests).await {
            return;
        }
    }
}

/// Asks for a file check; false once vantage no longer takes requests.
async fn request(requests: &mpsc::Sender<Request>) -> bool {
    let request = Request {
        trigger: Trigger::File,
        reply: None,
    };
    requests.send(request).await.is_ok()
}

/// Waits for the burst that began with `first` to end; false if the watcher is gone.
async fn settle(first: Signal, signals: &mut mpsc::UnboundedReceiver<Signal>) -> bool {
    let mut writing = first == Signal::Write;
    let limit = Instant::now() + SETTLE_LIMIT;
    loop {
        let wait = if writing { WRITER_LIMIT } else { QUIET };
        match timeout_at((Instant::now() + wait).min(limit), signals.recv()).await {
            Err(_) => return true,
            Ok(None) => return false,
            Ok(Some(Signal::Write)) => writing = true,
            Ok(Some(Signal::Closed | Signal::Other)) => writing = false,
            Ok(Some(Signal::Lost)) => {}
        }
    }
}

fn classify(kind: EventKind) -> Option<Signal> {
    match kind {
        // Opening and reading, vantage's own reads included, change nothing.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Signal::Closed),
        EventKind::Access(_) => None,
        EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => Some(Signal::Write),
        _ => Some(Signal::Other),
    }
}

/// What is watched now, and which event paths count.
struct Plan {
    watcher: RecommendedWatcher,
    /// Each watched path with the identity (device, inode) it had when the watch was added.
    watched: BTreeMap<PathBuf, (u64, u64)>,
    /// Paths that could not be watched, already logged.
    failing: HashSet<PathBuf>,
    relevant: Arc<Mutex<Relevant>>,
}

impl Plan {
    /// Watches what `config` and `files` lead to now, and stops watching what they no longer do.
    /// Every wanted path is watched again each time (a no-op for a live watch): notify drops a
    /// watch by itself when its path is deleted or moved, and a path recreated at once may get
    /// the same inode number back, so an unchanged identity does not prove a live watch.
    fn update(&mut self, config: &Path, watched: &Watched) {
        let mut want = BTreeMap::new();
        let mut relevant = HashSet::new();
        let mut folders = HashSet::new();
        let files = std::iter::once(config).chain(watched.files.iter().map(PathBuf::as_path));
        let paths = files
            .map(|p| (p, false))
            .chain(watched.folders.iter().map(|p| (p.as_path(), true)));
        for (path, is_folder) in paths {
            let Ok(path) = std::path::absolute(path) else {
                continue;
            };
            let (entries, end) = resolve(&path);
            for entry in entries {
                if let Some(folder) = entry.parent() {
                    if let Some(id) = identity(folder) {
                        want.insert(folder.to_path_buf(), id);
                    }
                    relevant.insert(folder.to_path_buf());
                }
                relevant.insert(entry);
            }
            if let Some(end) = end
                && let Some(id) = identity(&end)
            {
                if is_folder {
                    folders.insert(end.clone());
                }
                want.insert(end, id);
            }
        }
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|(path, id)| want.get(*path) != Some(id))
            .map(|(path, _)| path.clone())
            .collect();
        for path in stale {
            // Gone already, if the folder or file was deleted: nothing to undo then.
            let _ = self.watcher.unwatch(&path);
            self.watched.remove(&path);
        }
        // Before the new watches exist, so that their first events are not filtered out.
        *self.relevant.lock().unwrap_or_else(PoisonError::into_inner) = Relevant {
            entries: relevant,
            folders,
        };
        for (path, id) in want {
            match self.watcher.watch(&path, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.failing.remove(&path);
                    self.watched.insert(path, id);
                }
                Err(e) => {
                    // Said once, not at every update: the periodic check still covers the path.
                    self.watched.remove(&path);
                    if self.failing.insert(path.clone()) {
                        warn!(path = %path.display(), error = %e, "cannot watch for config changes");
                    }
                }
            }
        }
    }
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Follows an absolute `path` one component at a time. Returns the entries whose change would
/// change what the path leads to (every symlink on the way, and the last entry, or the first
/// missing one), and the file it ends at if it exists.
fn resolve(path: &Path) -> (Vec<PathBuf>, Option<PathBuf>) {
    let mut pending: VecDeque<OsString> = components(path);
    let mut at = PathBuf::from("/");
    let mut entries = Vec::new();
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            at.pop();
            continue;
        }
        let next = at.join(&name);
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() && links < MAX_LINKS => {
                links += 1;
                let Ok(target) = std::fs::read_link(&next) else {
                    entries.push(next);
                    return (entries, None);
                };
                entries.push(next);
                if target.is_absolute() {
                    at = PathBuf::from("/");
                }
                for part in components(&target).into_iter().rev() {
                    pending.push_front(part);
                }
            }
            Ok(_) => at = next,
            Err(_) => {
                entries.push(next);
                return (entries, None);
            }
        }
    }
    entries.push(at.clone());
    (entries, Some(at))
}

/// The names of `path`'s components, `..` included, without the root and `.`.
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolve_lists_every_link_on_the_way_and_the_file_it_ends_at() {
        let dir = std::env::temp_dir().join(format!("vantage-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for folder in ["etc", "app/releases/2", "cm/..v1"] {
            std::fs::create_dir_all(dir.join(folder)).unwrap();
        }
        std::fs::write(dir.join("app/releases/2/exporter.yml"), "").unwrap();
        symlink("releases/2", dir.join("app/current")).unwrap();
        symlink("../app/current/exporter.yml", dir.join("etc/exporter.yml")).unwrap();
        std::fs::write(dir.join("cm/..v1/exporter.yml"), "").unwrap();
        symlink("..v1", dir.join("cm/..data")).unwrap();
        symlink("..data/exporter.yml", dir.join("cm/exporter.yml")).unwrap();

        // A link to a file under a link to a folder (a release layout).
        let (entries, end) = resolve(&dir.join("etc/exporter.yml"));
        let file = dir.join("app/releases/2/exporter.yml");
        assert_eq!(
            entries,
            [
                dir.join("etc/exporter.yml"),
                dir.join("app/current"),
                file.clone()
            ]
        );
        assert_eq!(end, Some(file));
        // The kubelet's ConfigMap layout.
        let (entries, end) = resolve(&dir.join("cm/exporter.yml"));
        let file = dir.join("cm/..v1/exporter.yml");
        assert_eq!(
            entries,
            [
                dir.join("cm/exporter.yml"),
                dir.join("cm/..data"),
                file.clone()
            ]
        );
        assert_eq!(end, Some(file));
        // A missing file: its folder is where it will appear.
        let (entries, end) = resolve(&dir.join("etc/missing.yml"));
        assert_eq!((entries, end), (vec![dir.join("etc/missing.yml")], None));
        // A loop ends.
        symlink("loop", dir.join("loop")).unwrap();
        let (entries, end) = resolve(&dir.join("loop"));
        assert_eq!(entries.len(), MAX_LINKS + 1);
        assert_eq!(end, Some(dir.join("loop")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_patterns_folder_is_watched_also_when_it_is_the_current_one() {
        let mut inputs = Inputs::default();
        for pattern in ["*.json", "sd/*.yml"] {
            inputs.patterns.insert(PathBuf::from(pattern), Vec::new());
        }
        let watched = Watched::of(&[&inputs]);
        assert_eq!(watched.folders, [PathBuf::from("."), PathBuf::from("sd")]);
        assert!(std::path::absolute(&watched.folders[0]).is_ok());
    }

    #[test]
    fn reads_and_opens_are_not_changes() {
        assert_eq!(classify(EventKind::Access(AccessKind::Any)), None);
        assert_eq!(
            classify(EventKind::Access(AccessKind::Close(AccessMode::Read))),
            None
        );
        assert_eq!(
            classify(EventKind::Access(AccessKind::Close(AccessMode::Write))),
            Some(Signal::Closed)
        );
    }
}
