//! Reading the config and the files it names without trusting them: a path may name a FIFO
//! that never gets a writer, a device that never ends (`/dev/zero`), a file far larger than
//! any certificate, or a file on a network mount that stopped answering. Each of these once
//! hung or killed the exporter that a reload was meant to keep running. Here only regular files
//! are read, never more than a cap, and never waited for longer than [`TIME_LIMIT`].

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, mpsc};
use std::time::Duration;

/// `O_NONBLOCK` of `<fcntl.h>`, as Linux defines it on x86, ARM and RISC-V (std has no name for
/// it, and one flag is not worth the libc crate). Opening a FIFO without it waits for a writer,
/// which may never come; with it the open returns at once, and the file's type is checked
/// before anything is read. Regular files ignore the flag.
const O_NONBLOCK: i32 = 0o4000;

/// How long a read may take before the load gives up on the file. A regular file answers in
/// microseconds; one that does not is on a file system that stopped answering.
pub const TIME_LIMIT: Duration = Duration::from_secs(5);

/// The most a file may hold, and what such a file is called in the message when it holds more.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub bytes: u64,
    pub what: &'static str,
}

/// A file the config names: a PEM bundle, a key, a token. A whole OS trust store, the largest
/// of them in use, is a few hundred KiB.
pub const NAMED_FILE: Limit = Limit {
    bytes: 1 << 20,
    what: "a file the config names",
};

/// The config itself. A million short targets, the most the parser admits, take about 60 MB.
pub const CONFIG_FILE: Limit = Limit {
    bytes: 128 << 20,
    what: "a config file",
};

/// A list of targets (`file_sd`): a million short targets take about 60 MB, as in the config.
pub const TARGET_LIST: Limit = Limit {
    bytes: 128 << 20,
    what: "a target list",
};

/// The files `pattern` matches, sorted: the pattern itself when its file name has no `*` or
/// `?`, whether or not it exists; otherwise the regular files and links in its folder whose
/// names match (`*` any run of characters, `?` one), hidden ones (`.` first) only when the
/// pattern starts with a dot, as a shell does. A missing folder matches nothing. The folder is
/// listed within [`TIME_LIMIT`], as files are read.
pub fn expand(pattern: &Path) -> io::Result<Vec<PathBuf>> {
    let Some(name) = pattern.file_name().and_then(|n| n.to_str()) else {
        return Ok(vec![pattern.to_path_buf()]);
    };
    if !name.contains(['*', '?']) {
        return Ok(vec![pattern.to_path_buf()]);
    }
    // `*.json` next to a config named by a relative path: the folder is the current one.
    let folder = match pattern.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let wanted = name.to_string();
    let names = within(folder, TIME_LIMIT, move |folder| {
        let entries = match std::fs::read_dir(folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Ok(candidate) = entry.file_name().into_string() else {
                continue;
            };
            let hidden_ok = !candidate.starts_with('.') || wanted.starts_with('.');
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if hidden_ok && !is_dir && matches(wanted.as_bytes(), candidate.as_bytes()) {
                names.push(candidate);
            }
        }
        Ok(names)
    })?;
    let mut found: Vec<PathBuf> = names.iter().map(|n| pattern.with_file_name(n)).collect();
    found.sort();
    Ok(found)
}

/// Whether `name` matches the wildcard `pattern` (`*`, `?`).
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    // The classic backtracking match: linear but for the last `*`, which is all `*` needs.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Paths whose read was given up on and has not returned yet. A later read of one fails at once
/// instead of leaving another thread stuck beside the first.
static STUCK: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// The content of the regular file at `path`, at most `limit.bytes` of it, read within
/// [`TIME_LIMIT`]. The errors say what is wrong without naming the path, which the caller does.
pub fn read(path: &Path, limit: Limit) -> io::Result<Vec<u8>> {
    within(path, TIME_LIMIT, move |path| read_now(path, limit))
}

/// Runs `read` of `path` on a thread of its own and waits for it at most `time`: the only way
/// to bound a read that the kernel blocks in (a hung NFS mount). A read that never returns
/// keeps its thread, one per path at most.
fn within<T: Send + 'static>(
    path: &Path,
    time: Duration,
    read: impl FnOnce(&Path) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    // The same message for a read that times out and for one refused while it is still
    // stuck, so that a reload that keeps looking sees the same failure, not a new one.
    let timed_out = || {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no answer within {} s (is it on a network file system that stopped answering?)",
                time.as_secs_f64()
            ),
        )
    };
    let failed = || io::Error::other("the thread reading it failed");
    if stuck().contains(path) {
        return Err(timed_out());
    }
    // The reader hands over its result under the lock of `STUCK`, and the waiter gives up
    // (marking the path stuck and dropping its end) under it too: so the reader finds the
    // waiter gone exactly when the path was marked, and unmarks it.
    let (done, result) = mpsc::sync_channel(1);
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("vantage-read".to_string())
        .spawn(move || {
            let read = read(&owned);
            let mut stuck = stuck();
            if done.send(read).is_err() {
                stuck.remove(&owned);
            }
        })?;
    match result.recv_timeout(time) {
        Ok(read) => read,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let mut stuck = stuck();
            match result.try_recv() {
                Ok(read) => return read,
                // The reader panicked: nothing would ever unmark the path.
                Err(mpsc::TryRecvError::Disconnected) => return Err(failed()),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            stuck.insert(path.to_path_buf());
            drop(result);
            Err(timed_out())
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(failed()),
    }
}

fn stuck() -> MutexGuard<'static, BTreeSet<PathBuf>> {
    STUCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Opens without waiting, refuses anything but a regular file, and reads at most one byte
/// more than the limit (to tell a file of exactly the limit from a larger one that is growing).
fn read_now(path: &Path, limit: Limit) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    let not_regular = if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_file() {
        ""
    } else {
        "an unknown kind of file"
    };
    if !not_regular.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {not_regular}, not a regular file"),
        ));
    }
    let cap = format!("the {} MiB {} may be", limit.bytes >> 20, limit.what);
    let too_large = |message: String| io::Error::new(io::ErrorKind::FileTooLarge, message);
    if meta.len() > limit.bytes {
        return Err(too_large(format!(
            "it is {} bytes, more than {cap}",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    File::take(file, limit.bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit.bytes {
        // It grew while being read.
        return Err(too_large(format!("it holds more than {cap}")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn wildcards_match_as_a_shell_matches_file_names() {
        let m = |p: &str, n: &str| matches(p.as_bytes(), n.as_bytes());
        assert!(m("*.json", "a.json") && m("*.json", ".json") && m("tg_*.yml", "tg_.yml"));
        assert!(m("a?c", "abc") && !m("a?c", "ac") && m("*", "") && m("a*b*c", "aXbYbZc"));
        assert!(!m("*.json", "a.json.tmp") && !m("*.json", "a.yml") && !m("a*b", "acb c"));
        let dir = Dir::new("expand");
        for name in ["b.json", "a.json", ".a.json.tmp", ".hidden.json", "c.yml"] {
            std::fs::write(dir.0.join(name), "").unwrap();
        }
        std::fs::create_dir(dir.0.join("d.json")).unwrap();
        assert_eq!(
            expand(&dir.0.join("*.json")).unwrap(),
            [dir.0.join("a.json"), dir.0.join("b.json")],
            "sorted, without hidden files and folders"
        );
        assert_eq!(
            expand(&dir.0.join(".*.json")).unwrap(),
            [dir.0.join(".hidden.json")]
        );
        assert_eq!(
            expand(&dir.0.join("missing.json")).unwrap(),
            [dir.0.join("missing.json")],
            "a plain name is itself, there or not"
        );
        assert!(expand(&dir.0.join("none/*.json")).unwrap().is_empty());
        // Relative, in the current folder (the package's, for tests): as written.
        assert_eq!(
            expand(Path::new("Cargo.t*")).unwrap(),
            [PathBuf::from("Cargo.toml")]
        );
    }

    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let dir =
                std::env::temp_dir().join(format!("vantage-file-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const SMALL: Limit = Limit {
        bytes: 1 << 20,
        what: "a test file",
    };

    fn message(result: io::Result<Vec<u8>>) -> String {
        result.expect_err("a refused read").to_string()
    }

    #[test]
    fn a_regular_file_is_read_whole_up_to_its_limit() {
        let dir = Dir::new("regular");
        let path = dir.0.join("token");
        std::fs::write(&path, vec![b'x'; 1 << 20]).unwrap();
        assert_eq!(read(&path, SMALL).unwrap().len(), 1 << 20);
        // Through a symlink, as Kubernetes mounts Secrets.
        std::os::unix::fs::symlink(&path, dir.0.join("link")).unwrap();
        assert_eq!(read(&dir.0.join("link"), SMALL).unwrap().len(), 1 << 20);
    }

    #[test]
    fn a_file_over_its_limit_is_refused_with_the_limit() {
        let dir = Dir::new("large");
        let path = dir.0.join("bundle.pem");
        std::fs::write(&path, vec![b'x'; (1 << 20) + 1]).unwrap();
        assert_eq!(
            message(read(&path, SMALL)),
            "it is 1048577 bytes, more than the 1 MiB a test file may be"
        );
    }

    #[test]
    fn dev_zero_is_refused_without_reading_it() {
        assert_eq!(
            message(read(Path::new("/dev/zero"), SMALL)),
            "it is a character device, not a regular file"
        );
    }

    #[test]
    fn a_fifo_without_a_writer_is_refused_at_once() {
        let dir = Dir::new("fifo");
        let path = dir.0.join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let started = Instant::now();
        assert_eq!(
            message(read(&path, SMALL)),
            "it is a FIFO (named pipe), not a regular file"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = Dir::new("directory");
        assert_eq!(
            message(read(&dir.0, SMALL)),
            "it is a directory, not a regular file"
        );
    }

    #[test]
    fn a_missing_file_says_so() {
        let err = read(Path::new("/nonexistent/vantage/ca.pem"), SMALL).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_read_that_hangs_times_out_and_is_not_started_again_while_it_hangs() {
        let path = Path::new("/vantage-test/hung-mount/ca.pem");
        let (release, hung) = mpsc::channel::<()>();
        let limit = Duration::from_millis(100);
        let started = Instant::now();
        let err = within(path, limit, move |_| {
            let _ = hung.recv();
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
        // Still hung: refused at once, with the same message, and no second thread.
        let again = within(path, limit, |_| Ok(()));
        assert_eq!(again.unwrap_err().to_string(), err.to_string());
        assert!(started.elapsed() < Duration::from_secs(2));
        // Once the stuck read returns, the path is read again.
        release.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while stuck().contains(path) {
            assert!(Instant::now() < deadline, "the stuck read never ended");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(within(path, limit, |_| Ok(())).is_ok());
    }
}
