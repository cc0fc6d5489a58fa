//! Records the git revision for `--version` and `vantage_build_info`.
//!
//! `VANTAGE_REVISION` overrides it (container builds have no `.git`). Cargo is told to rerun
//! only when HEAD or the branch it points to moves, so ordinary edits do not rebuild this.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=VANTAGE_REVISION");
    let revision = std::env::var("VANTAGE_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=VANTAGE_REVISION={revision}");
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

fn git_revision() -> Option<String> {
    let git_dir = PathBuf::from(git(&["rev-parse", "--git-dir"])?);
    watch(&git_dir.join("HEAD"));
    watch(&git_dir.join("packed-refs"));
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(&git_dir.join(branch));
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}

/// Watching a path that does not exist would make cargo rerun this script on every build.
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
