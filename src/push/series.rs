//! From a rendering to samples: the OpenMetrics text that `/metrics` would serve, read back
//! line by line, so that a push sends exactly the series a scrape sees, names and labels
//! alike. And what a receiver must be told when a series ends.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::exposition::read_value;

use super::queue::{Sample, Series};
use super::wire::stale;

/// One sample line: its labels (`__name__` first, then as written) and value.
pub type Parsed = (Vec<(String, String)>, f64);

/// The samples of an OpenMetrics rendering, in order. Lines that are not samples (`#`
/// metadata, `# EOF`) are skipped, and so is any line this reader cannot take whole, which
/// only a collector bug could write.
pub fn parse(text: &str) -> Vec<Parsed> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Parsed> {
    let name_end = line.find(['{', ' '])?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = vec![("__name__".to_string(), name.to_string())];
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = rest.split_once("=\"")?;
            let (value, after) = read_value(after)?;
            labels.push((label.to_string(), value.into_owned()));
            rest = after.strip_prefix(',').unwrap_or(after);
        }
    }
    let value = rest.trim_start().split(' ').next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        other => other.parse().ok()?,
    };
    Some((labels, value))
}

/// The series one source (a target, or vantage itself) sent last, so that those it no longer
/// has get a staleness marker, and those it still has keep their one allocation.
#[derive(Debug, Default)]
pub struct LastSent {
    by_source: HashMap<String, HashSet<Arc<Series>>>,
}

impl LastSent {
    /// The samples to queue for a rendering of `source` at `timestamp_ms`: one per series,
    /// with `extra` labels (job, instance) added, then a marker for each series it had last
    /// time and has no more.
    pub fn samples(
        &mut self,
        source: &str,
        parsed: Vec<Parsed>,
        extra: &[(&str, &str)],
        timestamp_ms: i64,
    ) -> Vec<Sample> {
        let previous = self.by_source.remove(source).unwrap_or_default();
        let mut now: HashSet<Arc<Series>> = HashSet::with_capacity(parsed.len());
        let mut samples = Vec::with_capacity(parsed.len());
        for (mut labels, value) in parsed {
            // A target's own label of the same name wins; config validation keeps static
            // labels from being called job or instance, so this only guards the order.
            for (name, v) in extra {
                if labels.iter().all(|(n, _)| n != name) {
                    labels.push(((*name).to_string(), (*v).to_string()));
                }
            }
            // An empty value is no label to Prometheus (a scrape drops it, as the default
            // empty `location`), and the remote write spec asks senders not to send one.
            labels.retain(|(_, value)| !value.is_empty());
            labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let series: Arc<Series> = match previous.get(labels.as_slice()) {
                Some(known) => Arc::clone(known),
                None => Arc::from(labels),
            };
            samples.push(Sample::new(&series, timestamp_ms, value));
            now.insert(series);
        }
        samples.extend(
            previous
                .difference(&now)
                .map(|gone| Sample::new(gone, timestamp_ms, stale())),
        );
        self.by_source.insert(source.to_string(), now);
        samples
    }

    /// Markers for every series of `source`, which is then forgotten.
    pub fn forget(&mut self, source: &str, timestamp_ms: i64) -> Vec<Sample> {
        self.by_source
            .remove(source)
            .into_iter()
            .flatten()
            .map(|series| Sample::new(&series, timestamp_ms, stale()))
            .collect()
    }

    /// Markers for every series of the sources not in `keep` (targets a reload removed), which
    /// are then forgotten.
    pub fn retain(&mut self, keep: &HashSet<&str>, timestamp_ms: i64) -> Vec<Sample> {
        let gone: Vec<String> = self
            .by_source
            .keys()
            .filter(|s| !keep.contains(s.as_str()))
            .cloned()
            .collect();
        gone.iter()
            .filter_map(|source| self.by_source.remove(source))
            .flatten()
            .map(|series| Sample::new(&series, timestamp_ms, stale()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::wire::STALE_NAN;

    #[test]
    fn reads_the_sample_lines_of_a_rendering() {
        let text = "# HELP probe_success Up.\n# TYPE probe_success gauge\n\
            probe_success{name=\"a\",target=\"x:1\"} 1\n\
            probe_runs_total{name=\"a \\\"q\\\" \\\\ b\\nc\",result=\"success\"} 3\n\
            vantage_probe_schedule_delay_seconds_bucket{le=\"+Inf\"} 7\n\
            vantage_probes_in_flight 0\n\
            probe_http_content_length_bytes{name=\"a\"} -Inf\n\
            odd{name=\"a\"} NaN\n\
            broken{name=\"a} 1\n\
            # EOF\n";
        let parsed = parse(text);
        assert_eq!(parsed.len(), 6, "{parsed:?}");
        assert_eq!(
            parsed[0].0,
            [
                ("__name__".to_string(), "probe_success".to_string()),
                ("name".into(), "a".into()),
                ("target".into(), "x:1".into())
            ]
        );
        assert_eq!(parsed[1].0[1].1, "a \"q\" \\ b\nc", "escapes undone");
        assert_eq!(parsed[1].1, 3.0);
        assert_eq!(parsed[2].0[1], ("le".into(), "+Inf".into()));
        assert_eq!(parsed[3].0.len(), 1, "no labels");
        assert_eq!(parsed[4].1, f64::NEG_INFINITY);
        assert!(parsed[5].1.is_nan());
    }

    fn parsed(series: &[(&str, f64)]) -> Vec<Parsed> {
        series
            .iter()
            .map(|(name, v)| (vec![("__name__".to_string(), name.to_string())], *v))
            .collect()
    }

    #[test]
    fn a_series_that_ends_gets_a_staleness_marker_once() {
        let mut last = LastSent::default();
        let extra = [("job", "vantage"), ("instance", "edge-1")];
        let mut with_empty = parsed(&[("up", 1.0), ("failure_info", 1.0)]);
        with_empty[0]
            .0
            .push(("location".to_string(), String::new()));
        let first = last.samples("a", with_empty, &extra, 10);
        assert_eq!(first.len(), 2);
        let names: Vec<&str> = first[0].series.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["__name__", "instance", "job"],
            "sorted by name, the empty location left out"
        );
        let second = last.samples("a", parsed(&[("up", 1.0)]), &extra, 20);
        assert_eq!(second.len(), 2, "the value and one marker: {second:?}");
        assert!(Arc::ptr_eq(&first[0].series, &second[0].series), "reused");
        assert_eq!(second[1].series[0].1, "failure_info");
        assert_eq!(second[1].value.to_bits(), STALE_NAN);
        assert_eq!(second[1].timestamp_ms, 20);
        let third = last.samples("a", parsed(&[("up", 0.0)]), &extra, 30);
        assert_eq!(third.len(), 1, "a marker is sent once");
    }

    #[test]
    fn a_removed_source_gets_markers_for_all_its_series() {
        let mut last = LastSent::default();
        last.samples("a", parsed(&[("up", 1.0), ("x", 2.0)]), &[], 10);
        last.samples("b", parsed(&[("up", 1.0)]), &[], 10);
        let markers = last.retain(&HashSet::from(["b"]), 50);
        assert_eq!(markers.len(), 2);
        assert!(markers.iter().all(|s| s.value.to_bits() == STALE_NAN));
        assert!(markers.iter().all(|s| s.timestamp_ms == 50));
        assert!(
            last.retain(&HashSet::from(["b"]), 60).is_empty(),
            "forgotten"
        );
    }
}
