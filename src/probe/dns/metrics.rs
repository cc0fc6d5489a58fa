//! The dns probe's families: how many records answered, and the response code.

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;

use super::DnsFacts;
use crate::family::{Row, gauge, info};
use crate::net::dns::rcode_name;
use crate::outcome::Seen;

/// Renders the dns families over `rows`, one per target with a run, in their fixed order.
pub fn families(
    encoder: &mut DescriptorEncoder,
    rows: &[Row<'_, Seen<'_, DnsFacts>>],
) -> fmt::Result {
    gauge(
        encoder,
        rows,
        "probe_dns_answer_rrs",
        "Records in the answer section of the last dns run",
        |s| s.facts.map(|f| f.answers.len() as f64),
    )?;
    info(
        encoder,
        rows,
        "probe_dns_rcode",
        "The response code of the last dns run (NOERROR, NXDOMAIN, SERVFAIL, ...)",
        |s| match s.facts {
            Some(f) => vec![vec![("rcode", rcode_name(f.rcode))]],
            None => Vec::new(),
        },
    )
}
