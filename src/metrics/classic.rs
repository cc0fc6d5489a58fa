//! The classic Prometheus text format (0.0.4), derived from prometheus-client's OpenMetrics.
//!
//! The two formats share sample lines; they differ in metadata. In 0.0.4 a counter's HELP and
//! TYPE name the `_total` series, `info` does not exist (it becomes a gauge named `*_info`),
//! `unknown` is `untyped`, and there are no `# UNIT` or `# EOF` lines.

pub fn from_openmetrics(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // HELP precedes TYPE, and only TYPE tells how the name changes, so HELP waits for it.
    let mut pending_help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            pending_help = Some((name, help));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (classic_name, classic_kind) = match kind {
                "counter" if !name.ends_with("_total") => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "unknown" => (name.to_string(), "untyped"),
                other => (name.to_string(), other),
            };
            if let Some((help_name, help)) = pending_help.take()
                && help_name == name
            {
                out.push_str(&format!("# HELP {classic_name} {help}\n"));
            }
            out.push_str(&format!("# TYPE {classic_name} {classic_kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_every_metric_type_we_emit() {
        let openmetrics = "\
# HELP probe_runs Completed runs by result.
# TYPE probe_runs counter
probe_runs_total{name=\"a\",result=\"success\"} 3
# HELP vantage_build Version.
# TYPE vantage_build info
vantage_build_info{version=\"0.1.0\"} 1
# HELP probe_success Up.
# TYPE probe_success gauge
probe_success{name=\"a\"} 1
# HELP vantage_probe_schedule_delay_seconds Delay.
# TYPE vantage_probe_schedule_delay_seconds histogram
# UNIT vantage_probe_schedule_delay_seconds seconds
vantage_probe_schedule_delay_seconds_sum 0.5
vantage_probe_schedule_delay_seconds_count 2
vantage_probe_schedule_delay_seconds_bucket{le=\"0.001\"} 1
vantage_probe_schedule_delay_seconds_bucket{le=\"+Inf\"} 2
# EOF
";
        let classic = "\
# HELP probe_runs_total Completed runs by result.
# TYPE probe_runs_total counter
probe_runs_total{name=\"a\",result=\"success\"} 3
# HELP vantage_build_info Version.
# TYPE vantage_build_info gauge
vantage_build_info{version=\"0.1.0\"} 1
# HELP probe_success Up.
# TYPE probe_success gauge
probe_success{name=\"a\"} 1
# HELP vantage_probe_schedule_delay_seconds Delay.
# TYPE vantage_probe_schedule_delay_seconds histogram
vantage_probe_schedule_delay_seconds_sum 0.5
vantage_probe_schedule_delay_seconds_count 2
vantage_probe_schedule_delay_seconds_bucket{le=\"0.001\"} 1
vantage_probe_schedule_delay_seconds_bucket{le=\"+Inf\"} 2
";
        assert_eq!(from_openmetrics(openmetrics), classic);
    }

    #[test]
    fn unknown_becomes_untyped_and_label_values_pass_through_untouched() {
        let openmetrics = "# TYPE x unknown\nx{a=\"q\\\"uote\\nnl\\\\\"} 1\n# EOF\n";
        assert_eq!(
            from_openmetrics(openmetrics),
            "# TYPE x untyped\nx{a=\"q\\\"uote\\nnl\\\\\"} 1\n"
        );
    }
}
