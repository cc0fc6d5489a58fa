//! Jobs, relabelling and schedules.

use super::*;
use crate::import::listings::Listing;
use crate::import::node::parse;

const STANDARD: &str = concat!(
    "    relabel_configs:\n",
    "      - source_labels: [__address__]\n        target_label: __param_target\n",
    "      - source_labels: [__param_target]\n        target_label: instance\n",
    "      - target_label: __address__\n        replacement: 127.0.0.1:9115\n",
);

fn jobs(yaml: &str) -> (Vec<Target>, Vec<String>) {
    let (found, items) = both(yaml);
    (found.targets, items)
}

fn both(yaml: &str) -> (Jobs, Vec<String>) {
    let doc = parse(yaml).unwrap();
    let mut findings = Findings::new("p.yml");
    let found = targets(&doc, &mut findings).unwrap();
    let items = findings.items().iter().map(|i| i.to_string()).collect();
    (found, items)
}

#[test]
fn the_documented_job_gives_its_targets_module_labels_and_schedule() {
    let (targets, items) = jobs(&format!(
        "global: {{scrape_interval: 15s}}\nscrape_configs:\n  - job_name: blackbox\n    metrics_path: /probe\n    scrape_timeout: 5s\n    params: {{module: [http_2xx]}}\n    static_configs:\n      - targets: [a.example, b.example]\n        labels: {{team: web}}\n      - targets: [c.example]\n        labels: {{__param_module: other}}\n{STANDARD}"
    ));
    let got: Vec<(&str, &str)> = targets
        .iter()
        .map(|t| (t.address.value.as_str(), t.module.value.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("a.example", "http_2xx"),
            ("b.example", "http_2xx"),
            ("c.example", "other")
        ]
    );
    assert_eq!(targets[0].labels, [("team".to_string(), "web".to_string())]);
    assert_eq!(targets[0].interval, Duration::from_secs(15));
    assert_eq!(targets[0].scrape_timeout, Duration::from_secs(5));
    assert_eq!(
        targets[1].key,
        "scrape_configs.blackbox.static_configs[0].targets[1]"
    );
    assert!(items.iter().all(|i| i.contains(": note: ")), "{items:?}");
    assert!(
        items[0].contains("scrape_interval 15s (global)"),
        "{items:?}"
    );
}

#[test]
fn what_is_not_the_standard_shape_is_named_with_its_line() {
    let (targets, items) = jobs(&format!(
        "scrape_configs:\n  - job_name: b\n    metrics_path: /probe\n    params: {{module: [a, b]}}\n    consul_sd_configs: [{{server: 'c:8500'}}]\n    static_configs: [{{targets: [t]}}]\n{STANDARD}      - source_labels: [__address__]\n        regex: '(.*):80'\n        target_label: host\n"
    ));
    assert_eq!(targets.len(), 1);
    let lost: Vec<&String> = items
        .iter()
        .filter(|i| i.contains("not converted"))
        .collect();
    assert!(
        lost[0].starts_with("p.yml:4: scrape_configs.b.params.module[1]: not converted"),
        "{lost:?}"
    );
    assert!(
        lost[1].starts_with("p.yml:14: scrape_configs.b.relabel_configs[3]: not converted"),
        "{lost:?}"
    );
    assert!(
        lost[2].starts_with("p.yml:5: scrape_configs.b.consul_sd_configs: not converted"),
        "{lost:?}"
    );
    assert_eq!(lost.len(), 3);
}

#[test]
fn a_job_without_the_target_rule_gives_no_targets_and_says_so() {
    let (targets, items) = jobs(
        "scrape_configs:\n  - job_name: b\n    metrics_path: /probe\n    params: {module: [a]}\n    static_configs: [{targets: [t]}]\n",
    );
    assert!(targets.is_empty());
    assert!(
        items
            .iter()
            .any(|i| i.contains("without the rule that copies __address__")),
        "{items:?}"
    );
}

#[test]
fn other_jobs_are_left_with_a_note() {
    let (targets, items) =
        jobs("scrape_configs:\n  - job_name: node\n    static_configs: [{targets: [x:9100]}]\n");
    assert!(targets.is_empty());
    assert_eq!(
        items,
        [
            "p.yml:2: scrape_configs[0]: note: job \"node\" does not scrape /probe: not a blackbox job, left as it is"
        ]
    );
}

#[test]
fn file_and_http_sd_configs_are_the_jobs_listings() {
    let (found, items) = both(&format!(
        "scrape_configs:\n  - job_name: web\n    metrics_path: /probe\n    scrape_interval: 20s\n    params: {{module: [http_2xx]}}\n    file_sd_configs:\n      - {{files: [sd/a.json, 'sd/*.yml'], refresh_interval: 1m}}\n      - files: [/etc/more.json]\n    http_sd_configs:\n      - {{url: 'http://sd.example/targets', refresh_interval: 30s, basic_auth: {{username: u}}}}\n{STANDARD}"
    ));
    assert!(found.targets.is_empty());
    let listings: Vec<&Listing> = found.listed.iter().map(|l| &l.listing).collect();
    assert_eq!(
        listings,
        [
            &Listing::Files(vec![
                "sd/a.json".into(),
                "sd/*.yml".into(),
                "/etc/more.json".into()
            ]),
            &Listing::Http {
                url: "http://sd.example/targets".into(),
                refresh_interval: Some("30s".into()),
            },
        ]
    );
    let web = &found.listed[0];
    assert_eq!(
        (web.job.as_str(), web.module.value.as_str()),
        ("web", "http_2xx")
    );
    assert_eq!(web.interval, Duration::from_secs(20));
    let lost: Vec<&String> = items
        .iter()
        .filter(|i| i.contains("not converted"))
        .collect();
    assert_eq!(lost.len(), 1, "{items:?}");
    assert!(
        lost[0].starts_with(
            "p.yml:10: scrape_configs.web.http_sd_configs[0].basic_auth: not converted"
        ),
        "{lost:?}"
    );
    assert!(
        items
            .iter()
            .any(|i| i.contains("file_sd_configs[0].refresh_interval: note: vantage watches")),
        "{items:?}"
    );
}
