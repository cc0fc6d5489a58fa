//! The processes the benchmark starts, and what `/proc` says about them.

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A process this benchmark started; it is stopped (TERM, then KILL) when dropped, by its PID.
pub struct Process {
    name: String,
    child: std::process::Child,
}

impl Process {
    /// Starts `command` with its output in `log`.
    pub fn start(name: &str, command: &mut Command, log: &Path) -> Result<Process, String> {
        let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {name} ({command:?}): {e}"))?;
        Ok(Process {
            name: name.to_string(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system) the process has used so far, its exited threads included.
    pub fn cpu_seconds(&self) -> Result<f64, String> {
        cpu_from_stat(&format!("/proc/{}/stat", self.pid()))
            .map_err(|e| format!("{}: {e}", self.name))
    }

    /// Peak and current resident set size in bytes (VmHWM, VmRSS).
    pub fn rss(&self) -> Result<(u64, u64), String> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .map_err(|e| format!("{} is gone: {e}", self.name))?;
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|k| k * 1024)
                .ok_or_else(|| format!("no {key} in /proc/{}/status", self.pid()))
        };
        Ok((kib("VmHWM:")?, kib("VmRSS:")?))
    }

    /// Fails if the process has already exited (a bad config, a port in use).
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited: {status}", self.name)),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = output("getconf", &["CLK_TCK"]);
        out.trim().parse().unwrap_or(100.0)
    })
}

/// The first line a command prints (stdout, else stderr), or why it could not run.
pub fn output(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) => {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        }
        Err(e) => format!("{program}: {e}"),
    }
}

/// CPU time this process has used so far.
pub fn own_cpu_seconds() -> f64 {
    cpu_from_stat("/proc/self/stat").expect("reading /proc/self/stat")
}

/// User + system time from a `/proc/.../stat` file, exited threads included.
fn cpu_from_stat(path: &str) -> Result<f64, String> {
    let stat = fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    // The fields after the command name, which is in parentheses and may hold spaces:
    // utime and stime are fields 14 and 15 of the whole line, 12th and 13th after it.
    let rest = &stat[stat.rfind(')').ok_or("no ')' in a stat file")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("{path}: field {} unreadable", i + 3))
    };
    Ok((tick(11)? + tick(12)?) as f64 / ticks_per_second())
}
