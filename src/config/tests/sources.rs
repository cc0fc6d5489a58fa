//! `target_sources`: the sources' own keys, and their lists built into targets (names, labels,
//! locations, modules, per type), with the last good list kept while the newest has mistakes.

use super::*;
use crate::build::Reads;

const HEAD: &str = "modules:
  tcp_check: {type: tcp, timeout: 2s}
  web: {type: http}
  ping: {type: icmp}
  resolve: {type: dns}
  soa:
    type: dns
    host: example.org
    dns: {record_type: SOA}
  asks: {type: dns, host: example.net}
target_sources:
  - name: api
    module: tcp_check
    http_sd: {url: 'http://127.0.0.1:9/sd'}
";

/// What the `api` source's server answered: `list`.
fn fetched(list: &str) -> SourceInputs {
    let mut inputs = SourceInputs::default();
    inputs.fetched.insert(
        "api".into(),
        Listed {
            origin: "http://127.0.0.1:9/sd".into(),
            text: list.into(),
            from: crate::config::sources::from_digest("http://127.0.0.1:9/sd"),
        },
    );
    inputs
}

fn load(yaml: &str, inputs: &SourceInputs) -> Result<Config, ConfigErrors> {
    let options = LoadOptions {
        location: Some("lab".into()),
        ..LoadOptions::default()
    };
    parse_with_inputs(yaml, "t.yml", &options, Reads::new(), inputs).0
}

fn target<'c>(config: &'c Config, name: &str) -> &'c Target {
    config
        .targets
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no target {name}"))
}

#[test]
fn listed_targets_run_their_module_with_the_groups_labels_names_and_locations() {
    let list = r#"[
  {"targets": ["10.0.0.1:443", "[2001:db8::1]:25"], "labels": {"team": "core", "__meta_x": "dropped"}},
  {"targets": ["10.0.0.2:22"], "labels": {"__meta_vantage_name": "bastion", "__meta_vantage_locations": "lab, other"}},
  {"targets": ["10.0.0.3:22"], "labels": {"__meta_vantage_locations": "other"}},
  {"targets": ["shop.example/health", "https://api.example/ready"], "labels": {"__param_module": "web"}},
  {"targets": ["10.0.0.9"], "labels": {"__param_module": "ping"}},
  {"targets": ["www.example.org"], "labels": {"__param_module": "resolve"}},
  {"targets": ["10.0.0.53:5353"], "labels": {"__param_module": "soa", "__meta_vantage_name": "soa"}},
  {"targets": ["10.0.0.54"], "labels": {"__param_module": "asks", "__meta_vantage_name": "asks"}}
]"#;
    let config = load(HEAD, &fetched(list)).unwrap_or_else(|e| panic!("{e}"));
    let report = &config.sources[0];
    assert_eq!((report.targets, report.state), (10, ListState::Newest));
    assert!(report.errors.is_empty() && report.good.is_some());
    assert_eq!(config.elsewhere, ["api/10.0.0.3:22"]);

    let t = target(&config, "api/10.0.0.1:443");
    assert_eq!(t.probe.target(), "10.0.0.1:443");
    assert_eq!(t.policy.timeout, Duration::from_secs(2), "the module's");
    assert_eq!(t.label("team").as_deref(), Some("core"));
    assert_eq!(t.label("__meta_x"), None);
    assert_eq!(t.label("location").as_deref(), Some("lab"));
    assert_eq!(
        target(&config, "api/[2001:db8::1]:25").probe.target(),
        "[2001:db8::1]:25"
    );
    assert_eq!(target(&config, "bastion").probe.target(), "10.0.0.2:22");
    let Probe::Http(h) = &target(&config, "api/shop.example/health").probe else {
        panic!("an http target")
    };
    assert_eq!(h.url.to_string(), "http://shop.example/health");
    assert!(matches!(
        target(&config, "api/10.0.0.9").probe,
        Probe::Icmp(_)
    ));
    assert_eq!(
        target(&config, "api/www.example.org").probe.target(),
        "www.example.org"
    );
    let Probe::Dns(d) = &target(&config, "soa").probe else {
        panic!("a dns target")
    };
    assert_eq!(
        d.server,
        Some("10.0.0.53:5353".parse().unwrap()),
        "the list's server"
    );
    assert_eq!(d.written, "example.org", "the module's question");
    let Probe::Dns(d) = &target(&config, "asks").probe else {
        panic!("a dns target")
    };
    assert_eq!(
        d.server,
        Some("10.0.0.54:53".parse().unwrap()),
        "the list's server, for a module without a dns table too"
    );
}

#[test]
fn a_list_fetched_from_another_url_is_not_the_sources() {
    let good = load(HEAD, &fetched(r#"[{"targets": ["10.0.0.1:443"]}]"#)).unwrap();
    // The URL changed: what the old one answered, fetched or last good, is not used.
    let moved = HEAD.replace("9/sd'", "9/other'");
    let mut inputs = fetched(r#"[{"targets": ["10.0.0.2:443"]}]"#);
    inputs
        .last_good
        .insert("api".into(), good.sources[0].good.clone().unwrap());
    let config = load(&moved, &inputs).unwrap();
    assert_eq!(config.sources[0].state, ListState::Empty);
    assert!(config.targets.is_empty());
}

#[test]
fn a_list_with_a_mistake_keeps_the_last_good_one_and_says_where() {
    let good = r#"[{"targets": ["10.0.0.1:443"]}]"#;
    let first = load(HEAD, &fetched(good)).unwrap();
    let mut inputs = fetched(
        r#"[
  {"targets": ["10.0.0.2:443"], "labels": {"job": "x"}},
  {"targets": ["no-port"]},
  {"targets": ["10.0.0.3:1"], "labels": {"__param_module": "nope"}}
]"#,
    );
    inputs
        .last_good
        .insert("api".into(), first.sources[0].good.clone().unwrap());
    let config = load(HEAD, &inputs).unwrap_or_else(|e| panic!("{e}"));
    let report = &config.sources[0];
    assert_eq!(report.state, ListState::LastGood);
    assert!(report.good.is_none());
    let names: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["api/10.0.0.1:443"]);
    let shown: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 3, "{shown:#?}");
    assert!(
        shown[0].starts_with("http://127.0.0.1:9/sd:2:"),
        "{shown:#?}"
    );
    assert!(shown[0].contains("[0].targets[0].labels.job"), "{shown:#?}");
    assert!(
        shown[1].contains("[1].targets[0]: \"no-port\""),
        "{shown:#?}"
    );
    assert!(shown[2].contains("unknown module \"nope\""), "{shown:#?}");

    // Without a last good list, the source gives nothing and the config still loads.
    let config = load(HEAD, &fetched("{targets: 1}")).unwrap();
    assert_eq!(config.sources[0].state, ListState::Empty);
    assert_eq!(config.sources[0].errors.len(), 1);
    assert!(config.targets.is_empty());
}

#[test]
fn a_last_good_list_this_config_cannot_build_refuses_the_config() {
    let first = load(HEAD, &fetched(r#"[{"targets": ["10.0.0.1:443"]}]"#)).unwrap();
    let mut inputs = fetched("not: [a list");
    inputs
        .last_good
        .insert("api".into(), first.sources[0].good.clone().unwrap());
    // A config target now has the name of the last good list's target.
    let yaml =
        format!("{HEAD}targets:\n  - {{name: 'api/10.0.0.1:443', type: tcp, host: a, port: 1}}\n");
    let e = load(&yaml, &inputs).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert!(
        e.0[0]
            .message
            .contains("its last good list no longer builds"),
        "{e}"
    );
    assert_eq!(e.0[0].path, "target_sources[0]");
}

#[test]
fn names_must_stay_unique_across_the_config_and_every_source() {
    let yaml = format!(
        "{HEAD}  - name: more\n    module: tcp_check\n    http_sd: {{url: 'http://127.0.0.1:9/more'}}\ntargets:\n  - {{name: taken, type: tcp, host: a, port: 1}}\n"
    );
    let mut inputs = fetched(
        r#"[{"targets": ["10.0.0.1:1", "10.0.0.1:1"]}, {"targets": ["10.0.0.2:1"], "labels": {"__meta_vantage_name": "taken"}}]"#,
    );
    inputs.fetched.insert(
        "more".into(),
        Listed {
            origin: "more".into(),
            text: r#"[{"targets": ["10.0.0.5:1"]}]"#.into(),
            from: crate::config::sources::from_digest("http://127.0.0.1:9/more"),
        },
    );
    let config = load(&yaml, &inputs).unwrap();
    let errors: Vec<String> = config.sources[0]
        .errors
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors.iter().all(|e| e.contains("duplicate name")),
        "{errors:#?}"
    );
    assert_eq!(
        config.sources[1].state,
        ListState::Newest,
        "one source's mistakes stay its own"
    );
    let names: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["taken", "more/10.0.0.5:1"]);
}

#[test]
fn a_list_over_max_targets_is_refused_whole() {
    let yaml = HEAD.replace(
        "module: tcp_check\n",
        "module: tcp_check\n    max_targets: 2\n",
    );
    let config = load(&yaml, &fetched(r#"[{"targets": ["a:1", "b:1", "c:1"]}]"#)).unwrap();
    let report = &config.sources[0];
    assert_eq!(report.state, ListState::Empty);
    assert_eq!(report.errors.len(), 1);
    assert!(
        report.errors[0]
            .message
            .contains("more targets than the source's max_targets (2)"),
        "{:?}",
        report.errors
    );
    assert_eq!(
        (report.errors[0].line, report.errors[0].column),
        (1, 29),
        "at the first target past the limit, c:1"
    );
    assert!(config.targets.is_empty());
}

#[test]
fn groups_and_labels_count_against_the_limit_as_they_are_parsed() {
    let yaml = HEAD.replace(
        "module: tcp_check\n",
        "module: tcp_check\n    max_targets: 2\n",
    );
    let empty = load(
        &yaml,
        &fetched(r#"[{"targets": []}, {"targets": []}, {"targets": []}]"#),
    )
    .unwrap();
    assert!(
        empty.sources[0].errors[0]
            .message
            .contains("more groups than the source's max_targets (2)"),
        "{:?}",
        empty.sources[0].errors
    );
    let labels: Vec<String> = (0..300).map(|i| format!("\"l{i}\": \"v\"")).collect();
    let list = format!(
        r#"[{{"targets": ["a:1"], "labels": {{{}}}}}]"#,
        labels.join(", ")
    );
    let many = load(HEAD, &fetched(&list)).unwrap();
    assert!(
        many.sources[0].errors[0]
            .message
            .contains("a group of more than 256 labels"),
        "{:?}",
        many.sources[0].errors
    );
}

#[test]
fn a_template_is_a_module_of_the_sources_own() {
    let yaml = "target_sources:
  - name: api
    template:
      type: http
      interval: 45s
      http: {method: HEAD}
    http_sd: {url: 'http://127.0.0.1:9/sd'}
";
    let config = load(yaml, &fetched(r#"[{"targets": ["a.example"]}]"#)).unwrap();
    let t = target(&config, "api/a.example");
    assert_eq!(t.interval, Duration::from_secs(45));
    assert!(config.modules.is_empty(), "a template is not on /probe");
    let list = r#"[{"targets": ["b.example"], "labels": {"__param_module": "@api"}}]"#;
    let config = load(yaml, &fetched(list)).unwrap();
    assert!(
        config.sources[0].errors[0]
            .message
            .contains("unknown module \"@api\""),
        "no list names a template: {:?}",
        config.sources[0].errors
    );
}

#[test]
fn every_mistake_in_a_source_is_named_where_it_is_written() {
    let head = "modules:\n  m: {type: tcp}\ntarget_sources:\n";
    let cases: [(&str, u64, u64, &str, &str); 10] = [
        (
            "  - name: a\n    file_sd: {files: [x.json]}\n",
            4,
            5,
            "target_sources[0].module",
            "missing",
        ),
        (
            "  - name: a\n    module: m\n    template: {type: tcp}\n    file_sd: {files: [x.json]}\n",
            6,
            15,
            "target_sources[0].template",
            "set one",
        ),
        (
            "  - name: a\n    module: nope\n    file_sd: {files: [x.json]}\n",
            5,
            13,
            "target_sources[0].module",
            "unknown module",
        ),
        (
            "  - name: a\n    module: m\n",
            4,
            5,
            "target_sources[0]",
            "file_sd (files) or http_sd",
        ),
        (
            "  - name: a\n    module: m\n    file_sd: {files: [x.json]}\n    http_sd: {url: 'http://a/'}\n",
            7,
            14,
            "target_sources[0].http_sd",
            "make two sources",
        ),
        (
            "  - name: a\n    module: m\n    file_sd: {files: ['sd/*/x.json']}\n",
            6,
            23,
            "target_sources[0].file_sd.files[0]",
            "only the file name",
        ),
        (
            "  - name: a\n    module: m\n    file_sd: {files: []}\n",
            6,
            22,
            "target_sources[0].file_sd.files",
            "list one or more",
        ),
        (
            "  - name: a\n    module: m\n    max_targets: 0\n    file_sd: {files: [x.json]}\n",
            6,
            18,
            "target_sources[0].max_targets",
            "from 1 to",
        ),
        (
            "  - name: a\n    module: m\n    http_sd: {url: 'http://a/', refresh_interval: 500ms}\n",
            6,
            51,
            "target_sources[0].http_sd.refresh_interval",
            "at least 1s",
        ),
        (
            "  - name: a\n    module: m\n    http_sd: {url: 'http://a/', refresh_interval: 5s, timeout: 5s}\n",
            6,
            64,
            "target_sources[0].http_sd.timeout",
            "shorter than refresh_interval",
        ),
    ];
    for (entry, line, column, path, needle) in cases {
        single(&format!("{head}{entry}"), line, column, path, needle);
    }
    single(
        &format!(
            "{head}  - {{name: a, module: m, file_sd: {{files: [x]}}}}\n  - {{name: a, module: m, file_sd: {{files: [y]}}}}\n"
        ),
        5,
        12,
        "target_sources[1].name",
        "another source (line 4)",
    );
}

#[test]
fn file_lists_are_read_relative_to_the_config_and_matched_by_pattern() {
    let dir = std::env::temp_dir().join(format!("vantage-sources-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sd")).unwrap();
    std::fs::write(dir.join("sd/a.json"), r#"[{"targets": ["10.0.0.1:1"]}]"#).unwrap();
    std::fs::write(dir.join("sd/.hidden.json"), "garbage").unwrap();
    // Over the 1 MiB of other files the config names: a list may be larger.
    let padding = format!("# {}\n", "x".repeat(1 << 20));
    std::fs::write(
        dir.join("sd/b.yml"),
        padding + "- targets: ['10.0.0.2:1']\n",
    )
    .unwrap();
    let yaml = "modules:\n  m: {type: tcp}\ntarget_sources:\n  - {name: f, module: m, file_sd: {files: ['sd/*.json', sd/b.yml, sd/a.json]}}\n";
    let file = dir.join("exporter.yml").display().to_string();
    let (config, inputs) = parse_with_inputs(
        yaml,
        &file,
        &LoadOptions::default(),
        Reads::new(),
        &SourceInputs::default(),
    );
    let config = config.unwrap();
    let names: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["f/10.0.0.1:1", "f/10.0.0.2:1"]);
    assert_eq!(
        inputs.patterns.get(&dir.join("sd/*.json")),
        Some(&vec![dir.join("sd/a.json")]),
        "the pattern, with what it matched, for the watch"
    );
    assert!(inputs.files.contains_key(&dir.join("sd/b.yml")));
    let (unchanged, _) = inputs.read_again();
    assert!(unchanged, "read again as a list, the large one is the same");
    std::fs::write(dir.join("sd/c.json"), "[]").unwrap();
    assert!(
        !inputs.read_again().0,
        "a new file matching the pattern is a change"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
