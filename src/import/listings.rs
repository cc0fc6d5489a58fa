//! A blackbox job's `file_sd_configs` and `http_sd_configs`: where its targets are listed in
//! Prometheus' SD formats, which vantage reads itself as a target source (`target_sources`).

use std::time::Duration;

use super::findings::Findings;
use super::node::{self, Node, Table, line};
use crate::build::S;

/// Where a job's targets are listed.
#[derive(Debug, PartialEq, Eq)]
pub enum Listing {
    /// Every file and pattern of the job's `file_sd_configs`, as written.
    Files(Vec<String>),
    Http {
        url: String,
        refresh_interval: Option<String>,
    },
}

/// A job's listed targets: what they run, at what schedule, and where the list is.
#[derive(Debug)]
pub struct Listed {
    pub job: String,
    pub module: S<String>,
    pub interval: Duration,
    pub scrape_timeout: Duration,
    /// Where it was written, for the findings.
    pub line: u64,
    pub key: String,
    pub listing: Listing,
}

/// The listings of a job's `file_sd_configs` (all its files, as one list) or
/// `http_sd_configs` (one a server), written at line `at`, each with its line and key; what
/// they hold that vantage does not take is named.
pub fn listings(
    sd: &str,
    (node, at): (&S<Node>, u64),
    key: &str,
    findings: &mut Findings,
) -> Vec<(u64, String, Listing)> {
    let mut found = Vec::new();
    let mut files = Vec::new();
    for (i, entry) in node::list(node, key, findings)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let path = format!("{key}[{i}]");
        let Some(mut table) = Table::of(entry, &path, findings) else {
            continue;
        };
        let refresh = table.take("refresh_interval");
        if sd == "file_sd_configs" {
            if let Some(r) = refresh {
                findings.note(
                    line(r),
                    &table.key("refresh_interval"),
                    "vantage watches the files, and reads them again at least every minute",
                );
            }
            let written = table
                .take("files")
                .and_then(|f| node::texts(f, &table.key("files"), findings))
                .unwrap_or_default();
            files.extend(written.into_iter().map(|f| f.value));
            table.finish(findings, &[]);
        } else {
            let url = table
                .take("url")
                .and_then(|u| node::text(u, &table.key("url"), findings));
            let refresh_interval =
                refresh.and_then(|r| node::text(r, &table.key("refresh_interval"), findings));
            for (other, _, at) in table.rest() {
                findings.skip(
                    at,
                    &table.key(other),
                    "write it into the target source's http_sd by hand: it takes basic_auth, \
                     authorization, tls and headers as remote_write does",
                );
            }
            if let Some(url) = url {
                let listing = Listing::Http {
                    url,
                    refresh_interval,
                };
                found.push((line(entry), path, listing));
            }
        }
    }
    if !files.is_empty() {
        found.push((at, key.to_string(), Listing::Files(files)));
    }
    found
}
