//! The container image, as far as it can be proven without a Docker engine: the release binary
//! the Dockerfile builds needs no shared library that its runtime base lacks, nor a newer glibc
//! than the base's, and the build and runtime stages are the same Debian release.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The runtime base, and the Debian packages with shared libraries that it ships: distroless'
/// `base` packages for debian12 (libc6, libssl3) and the ones `cc` adds (libgomp1, libstdc++6,
/// libgcc-s1, gcc-12-base), per base/config.bzl and cc/config.bzl of
/// GoogleContainerTools/distroless. Changing the base means checking this list again.
const BASE: &str = "gcr.io/distroless/cc-debian12:nonroot";
const BASE_PACKAGES: [&str; 6] = [
    "libc6",
    "libssl3",
    "libgomp1",
    "libstdc++6",
    "libgcc-s1",
    "gcc-12-base",
];
/// Debian 12's glibc, which the base ships.
const BASE_GLIBC: (u32, u32) = (2, 36);

fn dockerfile_stages() -> Vec<String> {
    std::fs::read_to_string(Path::new(ROOT).join("Dockerfile"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// The Debian package that installed `path` (as `ldd` names it, or its real path).
fn package_of(path: &str) -> String {
    let query = |p: &str| {
        let out = Command::new("dpkg").args(["-S", p]).output().unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let found = query(path)
        .or_else(|| query(std::fs::canonicalize(path).unwrap().to_str().unwrap()))
        .unwrap_or_else(|| panic!("no Debian package owns {path}"));
    let package = found.split(':').next().unwrap().trim();
    package.to_string()
}

#[test]
fn the_release_binary_needs_only_what_the_runtime_base_ships() {
    let stages = dockerfile_stages();
    assert_eq!(
        stages.len(),
        2,
        "a build stage and a runtime stage: {stages:?}"
    );
    assert_eq!(stages[1], BASE, "the runtime base this test knows");
    assert!(
        stages[0].ends_with("-bookworm"),
        "the build stage is Debian 12 like the base: {}",
        stages[0]
    );
    // The libraries are mapped to this machine's packages, which must be the base's release;
    // tests/run builds the release binary (as the Dockerfile does) before the tests.
    crate::support::needs(&["debian12", "release-binary"]);
    let binary = Path::new(ROOT).join("target/release/vantage");
    let out = Command::new("ldd").arg("-v").arg(&binary).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let (libraries, versions) = text.split_once("Version information:").unwrap();

    let mut packages = BTreeSet::new();
    for line in libraries.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("linux-vdso.so") {
            continue; // the kernel's, mapped into every process
        }
        assert!(!line.contains("not found"), "{line}");
        let path = match line.split_once(" => ") {
            Some((_, rest)) => rest.split(" (").next().unwrap(),
            None => line.split(" (").next().unwrap(),
        };
        packages.insert(package_of(path));
    }
    let extra: Vec<&String> = packages
        .iter()
        .filter(|p| !BASE_PACKAGES.contains(&p.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "the release binary needs packages {BASE} lacks: {extra:?}\n{text}"
    );
    assert!(packages.contains("libc6"), "{text}");

    // The binary's own needs: the block under its name, before those of the libraries.
    let own = versions
        .split(&format!("{}:", binary.display()))
        .nth(1)
        .unwrap()
        .split(":\n")
        .next()
        .unwrap();
    let glibc: Vec<(u32, u32)> = own
        .split("(GLIBC_")
        .skip(1)
        .map(|v| {
            let version = v.split(')').next().unwrap();
            let mut parts = version.split('.').map(|n| {
                n.parse::<u32>()
                    .unwrap_or_else(|_| panic!("GLIBC_{version}"))
            });
            (parts.next().unwrap(), parts.next().unwrap())
        })
        .collect();
    assert!(!glibc.is_empty(), "{text}");
    let newest = glibc.iter().max().unwrap();
    assert!(
        *newest <= BASE_GLIBC,
        "needs glibc {newest:?}, newer than the base's {BASE_GLIBC:?}"
    );
}
