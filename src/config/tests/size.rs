//! What a built target holds. A config of a million targets keeps a million of them, so what
//! they have in common is held once per load, not once per target.

use std::mem::size_of;
use std::sync::Arc;

use super::*;
use crate::config::target::Label;

const TWO: &str = "location: dc1\nlabels: {team: web}\ntargets:\n  \
                   - {name: a, type: tcp, host: 127.0.0.1, port: 80}\n  \
                   - {name: b, type: tcp, host: 127.0.0.2, port: 80, labels: {tier: '1'}}\n";

#[test]
fn a_target_shares_its_label_texts() {
    let c = ok(TWO);
    let (a, b) = (&c.targets[0], &c.targets[1]);
    for ((ka, va), (kb, vb)) in a.labels.iter().zip(&b.labels) {
        assert!(Arc::ptr_eq(ka, kb), "the label name {ka} is shared");
        // A target's name and address are its own; its kind, location and labels are not.
        let own = matches!(&**ka, "name" | "target");
        assert_eq!(Arc::ptr_eq(va, vb), !own, "the value of {ka}");
    }
    assert_eq!(b.labels.len(), 6, "{:?}", b.labels);
    for t in &c.targets {
        assert_eq!(t.labels.capacity(), t.labels.len(), "no spare room");
    }
}

/// The heap a built tcp target to an IP address holds, counted from its parts: the `Arc` it
/// is kept in, its name, its labels and the label values only it has.
fn held(t: &Target) -> usize {
    const ARC_COUNTS: usize = 2 * size_of::<usize>();
    let own_values: usize = t
        .labels
        .iter()
        .filter(|(k, _)| matches!(&**k, "name" | "target"))
        .map(|(_, v)| ARC_COUNTS + v.len())
        .sum();
    ARC_COUNTS
        + size_of::<Target>()
        + t.name.capacity()
        + t.labels.capacity() * size_of::<(Label, Label)>()
        + own_values
}

#[test]
fn a_plain_target_holds_well_under_a_kibibyte() {
    let c = ok(TWO);
    let t = &c.targets[0];
    assert!(
        matches!(&t.probe, Probe::Tcp(tcp) if matches!(tcp.host, Host::Ip(_)) && tcp.steps.is_empty() && tcp.tls.is_none()),
        "a tcp target to an address holds nothing else on the heap"
    );
    // The `Target` itself (its probe, policy and schedule inline) is most of it, about 300
    // bytes; the labels are 5 pairs of pointers and two short texts. Over half of the kibibyte
    // an idle target may cost is left to the scheduler and the store.
    assert!(size_of::<Target>() <= 320, "{} bytes", size_of::<Target>());
    assert!(held(t) <= 576, "{} bytes", held(t));
}
