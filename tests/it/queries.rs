//! Every query a user is shown runs against a real Prometheus and returns data: each line of
//! the README's `promql` blocks, each `expr` of the dashboard (panel targets, annotations) with
//! Grafana's variables filled in as Grafana fills them, and each template variable's query
//! through the API Grafana calls for it. They are read from the files at run time, so the test
//! keeps checking whatever those files say later. A README query that may legitimately return
//! nothing carries [`MAY_BE_EMPTY`] in its trailing comment; it must still run without error.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::dns::Dnsmasq;
use crate::pki::Pki;
use crate::prometheus::{
    Prometheus, api, beside_certificate_servers, dashboard, expressions, percent_encode, query,
    read_shipped, wait_until,
};
use crate::servers::{self, Chain};
use crate::support::{self, TempDir, Vantage, closed_port, read_request_head, thread_peer};

/// The README's mark, in a query's trailing comment, for a query that may return nothing.
const MAY_BE_EMPTY: &str = "(may be empty)";

/// Prometheus scrapes vantage this often in the test; Grafana's intervals derive from it.
const SCRAPE_SECONDS: u64 = 1;

/// A query shown to users, and where it is shown.
#[derive(Debug)]
struct Shown {
    place: String,
    expr: String,
    may_be_empty: bool,
}

/// Each line of each ```` ```promql ```` block: a query, then perhaps a `#` comment.
fn readme_queries(readme: &str) -> Vec<Shown> {
    let mut found = Vec::new();
    let mut in_block = false;
    for (index, line) in readme.lines().enumerate() {
        let line = line.trim();
        if line.starts_with("```") {
            in_block = !in_block && line == "```promql";
            continue;
        }
        if !in_block {
            continue;
        }
        let (expr, comment) = split_comment(line);
        if !expr.is_empty() {
            found.push(Shown {
                place: format!("README.md:{} ({comment})", index + 1),
                expr: expr.to_string(),
                may_be_empty: comment.contains(MAY_BE_EMPTY),
            });
        }
    }
    found
}

/// A PromQL line split at its first `#` outside a string.
fn split_comment(line: &str) -> (&str, &str) {
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            _ if escaped => escaped = false,
            (Some(_), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '#') => return (line[..i].trim(), line[i + 1..].trim()),
            _ => {}
        }
    }
    (line.trim(), "")
}

/// Grafana's own variables for the dashboard's default time range, with the test's scrape
/// interval as the data source's: `$__interval` is at least the scrape interval (Grafana's
/// floor for a short range), and `$__rate_interval` is Grafana's
/// `max($__interval + scrape interval, 4 × scrape interval)`.
fn builtins(dashboard: &Value) -> BTreeMap<String, String> {
    let from = dashboard["time"]["from"].as_str().unwrap_or("now-6h");
    let range = from
        .strip_prefix("now-")
        .and_then(seconds)
        .unwrap_or_else(|| panic!("dashboard time.from {from:?}: not now-<duration>"));
    let interval = SCRAPE_SECONDS;
    let rate_interval = (interval + SCRAPE_SECONDS).max(4 * SCRAPE_SECONDS);
    [
        ("__interval", format!("{interval}s")),
        ("__interval_ms", format!("{}", interval * 1000)),
        ("__rate_interval", format!("{rate_interval}s")),
        ("__rate_interval_ms", format!("{}", rate_interval * 1000)),
        ("__range", format!("{range}s")),
        ("__range_s", format!("{range}")),
        ("__range_ms", format!("{}", range * 1000)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `6h`, `30m`, `2d` in seconds.
fn seconds(duration: &str) -> Option<u64> {
    let split = duration.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = duration.split_at(split);
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return None,
    };
    Some(n.parse::<u64>().ok()? * unit)
}

/// `text` with Grafana's variable references (`$name`, `${name}`, `${name:regex}`,
/// `[[name]]`) replaced by `values`; a reference to anything else is an error.
fn interpolate(text: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(['$', '[']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let (reference, length) = if let Some(inner) = tail.strip_prefix("${") {
            let end = inner.find('}').ok_or("an unclosed ${")?;
            let (name, format) = inner[..end].split_once(':').unwrap_or((&inner[..end], ""));
            if !["", "regex", "pipe"].contains(&format) {
                return Err(format!(
                    "${{{name}:{format}}}: a format this test does not know"
                ));
            }
            (Some(name), end + 3)
        } else if let Some(inner) = tail.strip_prefix("[[") {
            let end = inner.find("]]").ok_or("an unclosed [[")?;
            (Some(&inner[..end]), end + 4)
        } else if let Some(inner) = tail.strip_prefix('$') {
            let end = inner.find(|c| !name_char(c)).unwrap_or(inner.len());
            ((end > 0).then(|| &inner[..end]), end + 1)
        } else {
            (None, 1)
        };
        match reference {
            Some(name) => out.push_str(values.get(name).ok_or_else(|| {
                format!("${name} is neither a variable of the dashboard nor Grafana's")
            })?),
            None => out.push_str(&tail[..length]),
        }
        rest = &tail[length..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A value as Grafana puts it into a PromQL regex matcher: regex characters escaped, twice,
/// since the regex sits inside a PromQL string.
fn regex_escape(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '\\' | '$' | '^' | '*' | '{' | '}' | '[' | ']' | '\'' | '+' | '?' | '.' | '(' | ')'
            | '|' => format!("\\\\{c}"),
            c => c.to_string(),
        })
        .collect()
}

/// What a variable stands for in a query, given its options: "All" for a variable that offers
/// it (its `allValue`, else every option as Grafana joins them), else the first option
/// (regex-escaped if the variable is multi-valued, as Grafana does).
fn selection(variable: &Value, options: &[String]) -> String {
    match variable["allValue"]
        .as_str()
        .filter(|_| variable["includeAll"] == true)
    {
        Some(all) if !all.is_empty() => all.to_string(),
        _ if variable["includeAll"] == true => {
            let escaped: Vec<String> = options.iter().map(|o| regex_escape(o)).collect();
            format!("({})", escaped.join("|"))
        }
        _ if variable["multi"] == true => regex_escape(&options[0]),
        _ => options[0].replace('\\', "\\\\").replace('\'', "\\'"),
    }
}

/// The dashboard's variables, in order (each may use those before it), resolved against
/// Prometheus as Grafana resolves them; with Grafana's own variables. An option list that is
/// empty or a query that fails is a failure: Grafana's drop-down would be empty.
fn variables(
    prometheus: Option<SocketAddr>,
    dashboard: &Value,
) -> Result<BTreeMap<String, String>, String> {
    let mut values = builtins(dashboard);
    let range: u64 = values["__range_s"].parse().unwrap();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = variable["name"].as_str().unwrap_or_default();
        let place = format!("dashboard variable {name}");
        let text = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .unwrap_or_default();
        let options: Vec<String> = match variable["type"].as_str().unwrap_or_default() {
            "datasource" => continue,
            "custom" | "interval" => text.split(',').map(|o| o.trim().to_string()).collect(),
            "constant" | "textbox" => vec![text.to_string()],
            "query" => {
                let text = interpolate(text, &values).map_err(|e| format!("{place}: {e}"))?;
                if !variable["regex"].as_str().unwrap_or_default().is_empty() {
                    return Err(format!("{place}: a regex this test does not apply"));
                }
                match prometheus {
                    Some(prometheus) => label_values(prometheus, &text, range)
                        .map_err(|e| format!("{place}: {text}: {e}"))?,
                    None => vec!["offline".to_string()],
                }
            }
            other => return Err(format!("{place}: type {other:?} this test does not know")),
        };
        if options.is_empty() {
            return Err(format!("{place}: {text}: no options"));
        }
        values.insert(name.to_string(), selection(variable, &options));
    }
    Ok(values)
}

/// `label_values(label)` or `label_values(selector, label)` as Grafana's Prometheus data
/// source asks it: `/api/v1/label/<label>/values`, with `match[]` for a selector, over the
/// dashboard's time range.
fn label_values(prometheus: SocketAddr, text: &str, range: u64) -> Result<Vec<String>, String> {
    let args = text
        .trim()
        .strip_prefix("label_values(")
        .and_then(|a| a.strip_suffix(')'))
        .ok_or("not label_values(...), the only variable query this test knows")?;
    let (selector, label) = match args.rsplit_once(',') {
        Some((selector, label)) => (Some(selector.trim()), label.trim()),
        None => (None, args.trim()),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut path = format!(
        "/api/v1/label/{label}/values?start={}&end={now}",
        now - range
    );
    if let Some(selector) = selector {
        path.push_str(&format!("&match[]={}", percent_encode(selector)));
    }
    let data = api(prometheus, &path)?;
    let options: Vec<String> = data
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if options.is_empty() {
        return Err(format!("no values: {data}"));
    }
    Ok(options)
}

/// Every query of the dashboard's panels (rows' nested panels included) and annotations,
/// interpolated; every `expr` in the file must be one of them.
fn dashboard_queries(
    dashboard: &Value,
    values: &BTreeMap<String, String>,
) -> Result<Vec<Shown>, String> {
    fn panels<'a>(list: &'a Value, found: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            found.push(panel);
            panels(&panel["panels"], found);
        }
    }
    let mut all = Vec::new();
    panels(&dashboard["panels"], &mut all);
    let mut sources: Vec<(String, &Value)> = Vec::new();
    for panel in all {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let place = format!("dashboard panel {} ({})", panel["title"], target["refId"]);
            sources.push((place, target));
        }
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        sources.push((
            format!("dashboard annotation {}", annotation["name"]),
            annotation,
        ));
    }
    let mut found = Vec::new();
    for (place, source) in sources {
        let Some(expr) = source["expr"].as_str() else {
            continue;
        };
        found.push(Shown {
            expr: interpolate(expr, values).map_err(|e| format!("{place}: {expr}: {e}"))?,
            place,
            may_be_empty: false,
        });
    }
    let everywhere = expressions(dashboard).len();
    if found.len() != everywhere {
        return Err(format!(
            "{} expressions in panel targets and annotations, {everywhere} in the file: \
             teach this test where the others run",
            found.len()
        ));
    }
    Ok(found)
}

/// Whether an instant query's answer holds anything: a series, or a scalar or string (a
/// `[time, value]` pair).
fn has_data(data: &Value) -> bool {
    data["result"].as_array().is_some_and(|r| !r.is_empty())
}

/// Runs every query until each has returned data (counters and rates need a few scrapes) or
/// `limit` passed; returns a line per query that failed to run, or stayed empty.
fn failures(prometheus: SocketAddr, shown: Vec<Shown>, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut failed = Vec::new();
    let mut pending: Vec<(Shown, Value)> = shown.into_iter().map(|s| (s, Value::Null)).collect();
    loop {
        pending.retain_mut(|(shown, last)| {
            let path = format!("/api/v1/query?query={}", percent_encode(&shown.expr));
            match api(prometheus, &path) {
                Err(error) => {
                    failed.push(format!(
                        "{}: {}\n  failed: {error}",
                        shown.place, shown.expr
                    ));
                    false
                }
                Ok(data) => {
                    let keep = !has_data(&data) && !shown.may_be_empty;
                    *last = data;
                    keep
                }
            }
        });
        if pending.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    failed.extend(pending.into_iter().map(|(shown, last)| {
        format!(
            "{}: {}\n  no data after {limit:?} (mark a README query {MAY_BE_EMPTY} only if it \
             may legitimately be empty): {last}",
            shown.place, shown.expr
        )
    }));
    failed
}

/// Answers every request with 200 after 600 ms: a backend the README's "slow backends" finds.
fn slow_page(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if read_request_head(&mut stream).is_some() {
        std::thread::sleep(Duration::from_millis(600));
        let _ = std::io::Write::write_all(
            &mut stream,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        );
    }
}

/// Takes connections and reads them to their end.
fn drain(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = std::io::copy(&mut stream.by_ref().take(1 << 20), &mut std::io::sink());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_readme_and_dashboard_query_returns_data_from_a_real_prometheus() {
    support::needs(&[
        "root",
        "tool:prometheus",
        "tool:dnsmasq",
        "tool:/usr/sbin/slapd",
    ]);
    // The expiring one is within two weeks, and is checked without trusting its CA: a chain
    // that does not verify, watched with `verify: false`, inside its `alert_before_expiry`.
    beside_certificate_servers("queries", 5, every_query).await;
}

fn every_query(pki: &Pki, healthy_port: u16, expiring_port: u16) {
    let dir = TempDir::new("queries");
    let dnsmasq = Dnsmasq::start(&[]);
    let chain = Chain::new("queries-ldap");
    let slapd = servers::slapd(Some(&chain));
    let flapping_port = closed_port();
    let web = thread_peer(slow_page);
    let config = dir.write(
        "exporter.yml",
        &format!(
            "location: e2e
defaults: {{interval: 1s, timeout: 800ms}}
targets:
  - {{name: up, type: tcp, host: 127.0.0.1, port: {up}}}
  - {{name: down, type: tcp, host: 127.0.0.1, port: {down}}}
  - {{name: flapping, type: tcp, host: 127.0.0.1, port: {flapping_port}}}
  - {{name: slow-web, type: http, url: \"http://127.0.0.1:{web}/\", interval: 2s, timeout: 1500ms}}
  - name: tls-healthy
    type: tcp
    host: 127.0.0.1
    port: {healthy_port}
{healthy_tls}  - name: tls-expiring
    type: tcp
    host: 127.0.0.1
    port: {expiring_port}
    tls: {{server_name: vantage.test, verify: false, alert_before_expiry: 30d}}
  - name: directory
    type: tcp
    host: 127.0.0.1
    port: {ldap_port}
{ldap_tls}  - {{name: loopback, type: icmp, host: 127.0.0.1, icmp: {{count: 2}}}}
  - name: resolver
    type: dns
    host: www.vantage.test
    dns: {{server: \"{dns}\", expect_addresses: [127.0.0.10]}}
target_sources:
  - name: broken-list
    template: {{type: tcp}}
    file_sd: {{files: [broken.json]}}
",
            up = thread_peer(drain),
            down = closed_port(),
            healthy_tls = pki.yaml(""),
            ldap_port = slapd.ports[0],
            ldap_tls = chain.pki.yaml("      starttls: ldap\n"),
            dns = dnsmasq.server(),
        ),
    );
    // A list with a mistake, for the target source queries: its source runs nothing.
    dir.write("broken.json", r#"[{"targets": ["no-port"]}]"#);
    let vantage = Vantage::start(&config, &[]);
    // A second vantage point, whose runs of slow-web give up before its answer: the target
    // fails from there while e2e reaches it, the path problem that the dashboard's comparison
    // row and annotation show.
    // It pushes (remote_write) rather than being scraped, as an edge vantage point does, so
    // that the push's panels and queries have data too.
    // No Alertmanager: the rules load and evaluate, their alerts go nowhere.
    let nowhere: SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
    let prometheus = Prometheus::start(&dir, &[vantage.addr], nowhere);
    let far_config = dir.write(
        "far.yml",
        &format!(
            "location: e2e-far
defaults: {{interval: 1s, timeout: 300ms}}
targets:
  - {{name: slow-web, type: http, url: \"http://127.0.0.1:{web}/\"}}
remote_write:
  - url: http://{prometheus}/api/v1/write
    name: central
    self_metrics_interval: 1s
    queue: {{batch_send_deadline: 1s}}
",
            prometheus = prometheus.addr
        ),
    );
    let far = Vantage::start(&far_config, &[]);
    let explain = || {
        format!(
            "prometheus log:\n{}\nvantage log:\n{}\nfar vantage log:\n{}",
            prometheus.daemon.output(),
            vantage.log(),
            far.log()
        )
    };

    // The flapping target: Prometheus sees its failures grow, then it comes up.
    wait_until(
        Duration::from_secs(20),
        "Prometheus to see the flapping target fail",
        || {
            !query(
                prometheus.addr,
                r#"increase(probe_runs_total{name="flapping", result="failure"}[1m]) > 0"#,
            )
            .is_empty()
        },
        explain,
    );
    let listener = TcpListener::bind(("127.0.0.1", flapping_port)).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            drain(stream);
        }
    });
    wait_until(
        Duration::from_secs(20),
        "Prometheus to see the flapping target up",
        || !query(prometheus.addr, r#"probe_success{name="flapping"} == 1"#).is_empty(),
        explain,
    );

    let dashboard = dashboard();
    let mut problems = Vec::new();
    let mut shown = readme_queries(&read_shipped("README.md"));
    assert!(shown.len() >= 8, "the README's queries: {shown:#?}");
    match variables(Some(prometheus.addr), &dashboard)
        .and_then(|values| dashboard_queries(&dashboard, &values))
    {
        Ok(queries) => shown.extend(queries),
        Err(problem) => problems.push(problem),
    }
    let count = shown.len();
    problems.extend(failures(prometheus.addr, shown, Duration::from_secs(30)));
    assert!(
        problems.is_empty(),
        "{} of {count} queries failed:\n{}\nvantage log:\n{}\nfar vantage log:\n{}",
        problems.len(),
        problems.join("\n"),
        vantage.log(),
        far.log()
    );
}

#[test]
fn readme_queries_are_read_with_their_place_and_mark() {
    let readme = "```sh\nnot a query\n```\ntext\n```promql\nup == 0   # down \"now\"\n\n\
                  count(x{a=\"#\"}) > 1  # many (may be empty)\n# a comment line\n```\n\
                  ```\nnot either\n```\n";
    let found: Vec<(String, String, bool)> = readme_queries(readme)
        .into_iter()
        .map(|s| (s.place, s.expr, s.may_be_empty))
        .collect();
    assert_eq!(
        found,
        [
            ("README.md:6 (down \"now\")".into(), "up == 0".into(), false),
            (
                "README.md:8 (many (may be empty))".into(),
                "count(x{a=\"#\"}) > 1".into(),
                true
            ),
        ]
    );
}

#[test]
fn grafana_variables_are_filled_in_as_grafana_does() {
    let values: BTreeMap<String, String> = [("target", ".*"), ("__range", "21600s")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        interpolate(
            r#"x{name=~"$target", a=~"${target}|[[target]]$"}[$__range]"#,
            &values
        ),
        Ok(r#"x{name=~".*", a=~".*|.*$"}[21600s]"#.to_string())
    );
    assert!(
        interpolate("x{a=~\"$nope\"}", &values)
            .unwrap_err()
            .contains("$nope")
    );
    let variable = serde_json::json!({"includeAll": true, "allValue": null});
    assert_eq!(
        selection(&variable, &["a.b".into(), "c".into()]),
        r"(a\\.b|c)"
    );
    assert_eq!(
        selection(&serde_json::json!({"multi": true}), &["a.b".into()]),
        r"a\\.b"
    );
    assert_eq!(
        selection(&serde_json::json!({}), &["a.b'".into()]),
        r"a.b\'"
    );
}

#[test]
fn every_dashboard_query_uses_only_variables_it_defines() {
    let dashboard = dashboard();
    let values = variables(None, &dashboard).unwrap();
    assert_eq!(values["__rate_interval"], "4s");
    let queries = dashboard_queries(&dashboard, &values).unwrap();
    assert!(queries.len() > 30, "{queries:#?}");
}
