//! The `remote_write` list as written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::build::S;
pub use crate::config::endpoint::{RawAuthorization, RawBasicAuth};
use crate::duration::ConfigDuration;
use crate::tls::config::RawTls;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteWrite {
    pub url: S<String>,
    pub name: Option<S<String>>,
    pub timeout: Option<S<ConfigDuration>>,
    pub headers: Option<S<BTreeMap<String, S<String>>>>,
    pub basic_auth: Option<S<RawBasicAuth>>,
    pub authorization: Option<S<RawAuthorization>>,
    pub tls: Option<S<RawTls>>,
    pub queue: Option<S<RawQueue>>,
    pub job: Option<S<String>>,
    pub instance: Option<S<String>>,
    pub self_metrics_interval: Option<S<ConfigDuration>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub capacity: Option<S<i64>>,
    pub max_samples_per_send: Option<S<i64>>,
    pub batch_send_deadline: Option<S<ConfigDuration>>,
    pub min_backoff: Option<S<ConfigDuration>>,
    pub max_backoff: Option<S<ConfigDuration>>,
}
