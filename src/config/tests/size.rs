//! What a built target holds: a config of a million targets keeps a million of them.

use std::mem::size_of;

use super::*;

const TWO: &str = "location: dc1\nlabels: {team: web}\ntargets:\n  \
                   - {name: a, type: tcp, host: 127.0.0.1, port: 80}\n  \
                   - {name: b, type: tcp, host: 127.0.0.2, port: 80, labels: {tier: '1'}}\n";

#[test]
fn a_target_keeps_its_labels_as_one_text_as_its_series_start() {
    let c = ok(TWO);
    let b = &c.targets[1];
    assert_eq!(
        b.labels.text(),
        r#"name="b",probe="tcp",target="127.0.0.2:80",location="dc1",team="web",tier="1""#
    );
    let pairs: Vec<(&str, String)> = b.labels.iter().map(|(k, v)| (k, v.into_owned())).collect();
    let names: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        names,
        ["name", "probe", "target", "location", "team", "tier"]
    );
    assert_eq!(b.label("target").as_deref(), Some("127.0.0.2:80"));
    assert_eq!(b.label("tier").as_deref(), Some("1"));
    assert_eq!(b.label("job"), None);
}

/// The heap a built tcp target to an IP address holds, counted from its parts: the `Arc` it
/// is kept in, its name and its labels' text.
fn held(t: &Target) -> usize {
    const ARC_COUNTS: usize = 2 * size_of::<usize>();
    ARC_COUNTS + size_of::<Target>() + t.name.capacity() + t.labels.text().len()
}

#[test]
fn a_plain_target_holds_well_under_a_kibibyte() {
    let c = ok(TWO);
    let t = &c.targets[0];
    assert!(
        matches!(&t.probe, Probe::Tcp(tcp) if matches!(tcp.host, Host::Ip(_)) && tcp.steps.is_empty() && tcp.tls.is_none()),
        "a tcp target to an address holds nothing else on the heap"
    );
    // The `Target` itself (its probe, policy and schedule inline, the TCP probe's rarely set
    // TLS settings and resolver boxed) is most of it, about 250 bytes; the labels are one text
    // of about 70. Over half of the kibibyte an idle target may cost is left to the scheduler
    // and the store.
    assert!(size_of::<Target>() <= 256, "{} bytes", size_of::<Target>());
    assert!(held(t) <= 512, "{} bytes", held(t));
}
