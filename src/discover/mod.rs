//! The target sources at run time: a poller per `http_sd` source, and each source's state for
//! `/metrics`.
//!
//! A poller fetches its server's list and, when the list differs from the one it fetched last,
//! puts it where loads read it (`reload::Fetched`) and asks for a load (`Trigger::Source`). The
//! load builds it, or keeps the source's last good list when it has mistakes; a server that
//! cannot be reached keeps the list it gave last. Either way probing goes on: the poller waits
//! on nothing of the scheduler's, and a load is read off the runtime's threads.

mod fetch;
mod metrics;

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::sources::HttpSd;
use crate::config::{Config, ListState, Listed, Source, SourceKind};
use crate::reload::{Fetched, Request, Trigger};
pub use fetch::{Answer, fetch};
use metrics::Status;

struct Poller {
    fingerprint: u64,
    task: JoinHandle<()>,
}

/// The sources of the running config.
pub struct Discovery {
    fetched: Fetched,
    requests: mpsc::Sender<Request>,
    pollers: Mutex<BTreeMap<String, Poller>>,
    status: Arc<Mutex<BTreeMap<String, Status>>>,
}

impl Discovery {
    /// Pollers put what they fetch in `fetched`, and ask for loads on `requests`.
    pub fn new(fetched: Fetched, requests: mpsc::Sender<Request>) -> Self {
        Discovery {
            fetched,
            requests,
            pollers: Mutex::default(),
            status: Arc::default(),
        }
    }

    /// Takes the sources of a config about to run: their state, and a poller for each
    /// `http_sd` source (started, restarted when its settings changed, or stopped).
    pub fn apply(&self, config: &Config) {
        let now = SystemTime::now();
        let mut status = lock(&self.status);
        status.retain(|name, _| config.sources.iter().any(|r| r.source.name == *name));
        for report in &config.sources {
            let s = status
                .entry(report.source.name.clone())
                .or_insert_with(|| Status {
                    fetch_ok: true,
                    ..Status::default()
                });
            // A source of the same name may have become the other kind.
            s.kind = match report.source.kind {
                SourceKind::File { .. } => "file",
                SourceKind::Http(_) => "http",
            };
            s.targets = report.targets;
            match report.state {
                ListState::Newest => {
                    s.list_ok = true;
                    s.mistakes = None;
                    if s.fetch_ok {
                        s.last_success = Some(now);
                    }
                }
                ListState::LastGood | ListState::Empty if !report.errors.is_empty() => {
                    s.list_ok = false;
                    let mut hasher = DefaultHasher::new();
                    for e in &report.errors {
                        e.to_string().hash(&mut hasher);
                    }
                    let digest = hasher.finish();
                    if s.mistakes != Some(digest) {
                        s.failures += 1;
                        s.mistakes = Some(digest);
                    }
                }
                // Not fetched yet: nothing is known to be wrong.
                ListState::LastGood | ListState::Empty => {}
            }
        }
        drop(status);
        let mut pollers = lock(&self.pollers);
        let wanted: BTreeMap<&str, (&HttpSd, &Source)> = config
            .sources
            .iter()
            .filter_map(|r| match &r.source.kind {
                SourceKind::Http(http) => Some((r.source.name.as_str(), (&**http, &*r.source))),
                SourceKind::File { .. } => None,
            })
            .collect();
        let mut fetched = lock(&self.fetched);
        pollers.retain(|name, poller| {
            let keep = wanted
                .get(name.as_str())
                .is_some_and(|(_, s)| s.fingerprint == poller.fingerprint);
            if !keep {
                poller.task.abort();
                // Another URL's list, or none at all: the new poller fetches its own.
                fetched.remove(name);
            }
            keep
        });
        fetched.retain(|name, _| wanted.contains_key(name.as_str()));
        drop(fetched);
        for (name, (http, source)) in wanted {
            if pollers.contains_key(name) {
                continue;
            }
            let poll = Poll {
                name: name.to_string(),
                http: http.clone(),
                from: source.from,
                limit: source.answer_limit(),
                fetched: Arc::clone(&self.fetched),
                requests: self.requests.clone(),
                status: Arc::clone(&self.status),
            };
            let task = tokio::spawn(poll.run());
            let fingerprint = source.fingerprint;
            pollers.insert(name.to_string(), Poller { fingerprint, task });
        }
    }

    /// Stops every poller.
    pub fn stop(&self) {
        for (_, poller) in std::mem::take(&mut *lock(&self.pollers)) {
            poller.task.abort();
        }
    }
}

/// One `http_sd` source's poller.
struct Poll {
    name: String,
    http: HttpSd,
    /// The source's [`crate::config::Source::from`], which its lists carry.
    from: u64,
    /// The most an answer may hold.
    limit: usize,
    fetched: Fetched,
    requests: mpsc::Sender<Request>,
    status: Arc<Mutex<BTreeMap<String, Status>>>,
}

impl Poll {
    async fn run(self) {
        let mut etag: Option<String> = None;
        let mut failing = false;
        let origin = self.http.endpoint.shown_url.clone();
        loop {
            let answer = fetch(&self.http, etag.as_deref(), self.limit).await;
            let ok = answer.is_ok();
            let changed = match answer {
                Ok(Answer::NotModified) => false,
                Ok(Answer::List { text, etag: new }) => {
                    etag = new;
                    let listed = Listed {
                        origin: origin.clone(),
                        text: text.into(),
                        from: self.from,
                    };
                    let mut fetched = lock(&self.fetched);
                    let changed = fetched.get(&self.name) != Some(&listed);
                    fetched.insert(self.name.clone(), listed);
                    changed
                }
                Err(error) => {
                    if !failing {
                        warn!(source = %self.name, url = %origin, %error, "cannot fetch the target source's list; its last list keeps running");
                    }
                    false
                }
            };
            if ok && failing {
                info!(source = %self.name, url = %origin, "the target source answers again");
            }
            failing = !ok;
            if let Some(s) = lock(&self.status).get_mut(&self.name) {
                s.fetch_ok = ok;
                if !ok {
                    s.failures += 1;
                } else if s.list_ok && !changed {
                    s.last_success = Some(SystemTime::now());
                }
            }
            if changed {
                let request = Request {
                    trigger: Trigger::Source,
                    reply: None,
                };
                if self.requests.send(request).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(self.http.refresh_interval).await;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The sources' families on `/metrics`.
pub struct DiscoveryCollector(pub Arc<Discovery>);

impl std::fmt::Debug for DiscoveryCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiscoveryCollector")
    }
}

impl Collector for DiscoveryCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        let status = lock(&self.0.status).clone();
        metrics::encode(encoder, &status)
    }
}
