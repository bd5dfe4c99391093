//! `/metrics` in the OpenMetrics text format (1.0.0), for scrapers that ask for it (Prometheus
//! asks for it first): the only text format that carries exemplars. It is the Prometheus text
//! the recorders write, rewritten line by line where the two formats differ: a counter's family
//! is named without its `_total` (its samples keep it), empty lines go, the request duration
//! histogram's buckets get their exemplars, and `# EOF` ends it.

use super::exemplars::Exemplar;
use http::header::{HeaderMap, ACCEPT};
use std::collections::HashSet;

pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether the scraper takes OpenMetrics (Prometheus offers it first, then the older text).
pub(crate) fn asked_for(headers: &HeaderMap) -> bool {
    let accepts = headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok());
    let offers = accepts.flat_map(|value| value.split(','));
    offers
        .filter_map(|offer| offer.split(';').next())
        .any(|media| media.trim().eq_ignore_ascii_case("application/openmetrics-text"))
}

/// `text` (Prometheus' text format) as OpenMetrics, each bucket line of the histogram `exemplified`
/// followed by the exemplar `exemplar(series labels, le)` gives it.
pub(crate) fn rewrite(
    text: &str,
    exemplified: &str,
    exemplar: impl Fn(&str, &str) -> Option<Exemplar>,
) -> String {
    let counters: HashSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let bucket_prefix = format!("{exemplified}_bucket{{");
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.lines().filter(|line| !line.is_empty()) {
        match metadata(line) {
            Some((kind, name, rest)) if counters.contains(name) => {
                // A counter's samples are `<family>_total`; one named otherwise is declared
                // `unknown`, whose samples may be named anything.
                match (name.strip_suffix("_total"), kind) {
                    (Some(family), _) => out.push_str(&format!("# {kind} {family} {rest}")),
                    (None, "TYPE") => out.push_str(&format!("# TYPE {name} unknown")),
                    (None, _) => out.push_str(line),
                }
            }
            _ => {
                out.push_str(line);
                if line.starts_with(&bucket_prefix) {
                    if let Some(found) = bucket_series(line).and_then(|(series, le)| exemplar(series, le)) {
                        out.push_str(" # ");
                        out.push_str(&found.open_metrics());
                    }
                }
            }
        }
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out
}

/// A `# HELP` or `# TYPE` line's kind, metric name and the rest.
fn metadata(line: &str) -> Option<(&str, &str, &str)> {
    let rest = line.strip_prefix("# ")?;
    let (kind, rest) = rest.split_once(' ')?;
    if kind != "HELP" && kind != "TYPE" {
        return None;
    }
    let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((kind, name, rest))
}

/// A bucket line's series labels (as written, without `le`) and its `le`: the recorder writes
/// `le` last.
fn bucket_series(line: &str) -> Option<(&str, &str)> {
    let labels = &line[line.find('{')? + 1..line.rfind('}')?];
    let (series, le) = labels.rsplit_once("le=\"")?;
    let series = series.strip_suffix(',').unwrap_or(series);
    Some((series, le.strip_suffix('"')?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const PROMETHEUS_TEXT: &str = "\
# HELP lookout_upstream_retries_total Retries sent to an upstream.
# TYPE lookout_upstream_retries_total counter
lookout_upstream_retries_total{upstream=\"books\"} 3

# TYPE odd counter
odd 1

# HELP http_server_active_requests Requests in flight.
# TYPE http_server_active_requests gauge
http_server_active_requests{http_route=\"all\"} 0

# TYPE d histogram
d_bucket{http_route=\"all\",le=\"0.1\"} 1
d_bucket{http_route=\"all\",le=\"+Inf\"} 2
d_sum{http_route=\"all\"} 0.35
d_count{http_route=\"all\"} 2

";

    #[test]
    fn counters_are_named_by_family_buckets_carry_exemplars_and_eof_ends_it() {
        let exemplar = |series: &str, le: &str| {
            (series == "http_route=\"all\"" && le == "+Inf").then_some(Exemplar {
                trace_id: [1; 16],
                seconds: 0.3,
                at_unix_s: 1_700_000_000.0,
            })
        };
        let expected = format!(
            "\
# HELP lookout_upstream_retries Retries sent to an upstream.
# TYPE lookout_upstream_retries counter
lookout_upstream_retries_total{{upstream=\"books\"}} 3
# TYPE odd unknown
odd 1
# HELP http_server_active_requests Requests in flight.
# TYPE http_server_active_requests gauge
http_server_active_requests{{http_route=\"all\"}} 0
# TYPE d histogram
d_bucket{{http_route=\"all\",le=\"0.1\"}} 1
d_bucket{{http_route=\"all\",le=\"+Inf\"}} 2 # {{trace_id=\"{}\"}} 0.3 1700000000.000
d_sum{{http_route=\"all\"}} 0.35
d_count{{http_route=\"all\"}} 2
# EOF
",
            "01".repeat(16)
        );
        assert_eq!(rewrite(PROMETHEUS_TEXT, "d", exemplar), expected);
    }

    #[test]
    fn openmetrics_goes_to_scrapers_that_offer_to_take_it() {
        let accepts = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, HeaderValue::from_static(value));
            asked_for(&headers)
        };
        // Prometheus 2.x's offer.
        assert!(accepts("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"));
        assert!(!accepts("text/plain;version=0.0.4"));
        assert!(!accepts("*/*"));
        assert!(!asked_for(&HeaderMap::new()));
    }
}
