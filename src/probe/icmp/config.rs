//! The icmp target's config: its `icmp` table as written, and the builder that turns it, with
//! the target's shared keys, into an [`IcmpProbe`].

use serde::{Deserialize, Serialize};

use super::IcmpProbe;
use crate::build::{Common, Context, S};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawIcmp {
    pub count: Option<S<i64>>,
    pub max_loss_ratio: Option<S<f64>>,
    pub payload_size: Option<S<i64>>,
}

/// An icmp target from its shared keys and its `icmp` table.
pub fn build(cx: &mut Context, common: &Common, icmp: Option<&S<RawIcmp>>) -> Option<IcmpProbe> {
    let path = common.path;
    let mut ok = true;
    let host = cx.destination(common, "icmp targets need `host`");
    let empty = RawIcmp::default();
    let raw = icmp.map_or(&empty, |i| &i.value);
    let ipath = format!("{path}.icmp");
    let mut bounded = |value: Option<&S<i64>>,
                       key: &str,
                       range: std::ops::RangeInclusive<i64>,
                       default: i64| match value {
        None => default,
        Some(v) if range.contains(&v.value) => v.value,
        Some(v) => {
            cx.error(
                &v.referenced,
                format!("{ipath}.{key}"),
                format!(
                    "must be from {} to {}, not {}",
                    range.start(),
                    range.end(),
                    v.value
                ),
            );
            ok = false;
            default
        }
    };
    let count = bounded(raw.count.as_ref(), "count", 1..=100, 3);
    let payload_size = bounded(raw.payload_size.as_ref(), "payload_size", 0..=65_000, 56);
    let max_loss_ratio = match &raw.max_loss_ratio {
        None => 1.0,
        Some(r) if (0.0..=1.0).contains(&r.value) => r.value,
        Some(r) => {
            cx.error(
                &r.referenced,
                format!("{ipath}.max_loss_ratio"),
                format!("must be from 0 to 1, not {}", r.value),
            );
            ok = false;
            1.0
        }
    };
    let probe = IcmpProbe {
        host: host?,
        ip_version: common.ip_version,
        resolver: common.resolver?,
        count: u16::try_from(count).ok()?,
        payload_size: usize::try_from(payload_size).ok()?,
        max_loss_ratio,
    };
    ok.then_some(probe)
}
