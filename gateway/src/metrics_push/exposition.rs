//! Reads the gateway's own `/metrics` text back into families of series, for the OTLP push.
//! `metrics-exporter-prometheus` writes the text and offers no other way to read its recorders.
//! The crates that parse the format either split label values on commas without reading their
//! quoting (`prometheus-parse`), which a route named `a,b` would break, or are LGPL
//! (`openmetrics-parser`); the exporter's own output is narrow enough to read here: `# HELP` and
//! `# TYPE` before each family's samples, and each sample `name{label="value",...} value`, its
//! label values escaped (`\\`, `\"`, `\n`).

/// A family's type, as its `# TYPE` line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

/// One family: its name, help, type and samples, in the order written.
#[derive(Debug)]
pub(super) struct Family<'a> {
    pub(super) name: &'a str,
    pub(super) help: String,
    pub(super) kind: Kind,
    pub(super) samples: Vec<Sample<'a>>,
}

/// One sample line: what follows the family's name (`_bucket`, `_sum`, `_count`, or nothing),
/// its labels (also as written, between the braces) and its value.
#[derive(Debug, PartialEq)]
pub(super) struct Sample<'a> {
    pub(super) suffix: &'a str,
    pub(super) labels: Vec<(&'a str, String)>,
    pub(super) written: &'a str,
    pub(super) value: f64,
}

impl Sample<'_> {
    /// The value of the label `name` (`le` of a bucket, `quantile` of a summary's sample).
    pub(super) fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The labels without `name`: a bucket's series.
    pub(super) fn labels_without(&self, name: &str) -> Vec<(&str, &str)> {
        self.labels
            .iter()
            .filter(|(key, _)| *key != name)
            .map(|(key, value)| (*key, value.as_str()))
            .collect()
    }

    /// A bucket's series labels as written, without its `le`, which the exporter writes last:
    /// how the exemplars are keyed.
    pub(super) fn written_series(&self) -> &str {
        let series = self
            .written
            .rsplit_once("le=\"")
            .map_or(self.written, |(series, _)| series);
        series.strip_suffix(',').unwrap_or(series)
    }
}

/// Every family of `text`. A line that does not read as the exporter writes it is skipped: what
/// is pushed is then short of a series, never wrong.
pub(super) fn read(text: &str) -> Vec<Family<'_>> {
    let mut families: Vec<Family> = Vec::new();
    let mut help: Option<(&str, &str)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ').or(Some((rest, "")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let Some((name, kind)) = rest.split_once(' ').and_then(|(n, k)| Some((n, kind(k)?))) else {
                continue;
            };
            let help = match help.take() {
                Some((named, text)) if named == name => unescape(text),
                _ => String::new(),
            };
            families.push(Family {
                name,
                help,
                kind,
                samples: Vec::new(),
            });
        } else if let (Some(family), Some((name, sample))) = (families.last_mut(), sample(line)) {
            if let Some(suffix) = name.strip_prefix(family.name) {
                family.samples.push(Sample { suffix, ..sample });
            }
        }
    }
    families
}

fn kind(word: &str) -> Option<Kind> {
    match word {
        "counter" => Some(Kind::Counter),
        "gauge" | "untyped" => Some(Kind::Gauge),
        "histogram" => Some(Kind::Histogram),
        "summary" => Some(Kind::Summary),
        _ => None,
    }
}

/// A sample line's metric name and its labels and value (its suffix is the caller's to find).
fn sample(line: &str) -> Option<(&str, Sample<'_>)> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Vec::new();
    let mut written = "";
    if let Some(opened) = rest.strip_prefix('{') {
        let mut inside = opened;
        loop {
            inside = inside.trim_start_matches(',');
            if let Some(after) = inside.strip_prefix('}') {
                written = &opened[..opened.len() - inside.len()];
                rest = after;
                break;
            }
            let (key, after) = inside.split_once("=\"")?;
            let (value, after) = quoted(after)?;
            labels.push((key, value));
            inside = after;
        }
    }
    // A timestamp may follow the value; the exporter writes none.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number.parse().ok()?,
    };
    let sample = Sample {
        suffix: "",
        labels,
        written,
        value,
    };
    Some((name, sample))
}

/// A label value up to its closing quote, unescaped, and what follows the quote.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match (escaped, c) {
            (false, '\\') => escaped = true,
            (false, '"') => return Some((unescape(&text[..at]), &text[at + 1..])),
            _ => escaped = false,
        }
    }
    None
}

/// `\\`, `\"` and `\n` as the characters they stand for.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP lookout_upstream_retries_total Retries sent to an upstream.\n\
        # TYPE lookout_upstream_retries_total counter\n\
        lookout_upstream_retries_total{upstream=\"svc\"} 3\n\
        \n\
        # TYPE http_server_request_duration_seconds histogram\n\
        http_server_request_duration_seconds_bucket{http_route=\"a,b \\\"c\\\" \\\\d}\",le=\"0.5\"} 2\n\
        http_server_request_duration_seconds_bucket{http_route=\"a,b \\\"c\\\" \\\\d}\",le=\"+Inf\"} 3\n\
        http_server_request_duration_seconds_sum{http_route=\"a,b \\\"c\\\" \\\\d}\"} 1.25\n\
        http_server_request_duration_seconds_count{http_route=\"a,b \\\"c\\\" \\\\d}\"} 3\n\
        # TYPE lookout_events_queued gauge\n\
        lookout_events_queued 0\n";

    #[test]
    fn families_keep_their_type_help_and_samples() {
        let families = read(TEXT);
        let names: Vec<_> = families
            .iter()
            .map(|f| (f.name, f.kind, f.samples.len()))
            .collect();
        assert_eq!(
            names,
            [
                ("lookout_upstream_retries_total", Kind::Counter, 1),
                ("http_server_request_duration_seconds", Kind::Histogram, 4),
                ("lookout_events_queued", Kind::Gauge, 1),
            ]
        );
        assert_eq!(families[0].help, "Retries sent to an upstream.");
        assert_eq!(
            families[1].help, "",
            "a help line of another family is not this one's"
        );
        assert_eq!(
            families[0].samples[0],
            Sample {
                suffix: "",
                labels: vec![("upstream", "svc".to_owned())],
                written: "upstream=\"svc\"",
                value: 3.0
            }
        );
    }

    #[test]
    fn label_values_are_read_through_their_quoting() {
        let families = read(TEXT);
        let bucket = &families[1].samples[1];
        assert_eq!(bucket.suffix, "_bucket");
        assert_eq!(bucket.label("http_route"), Some("a,b \"c\" \\d}"));
        assert_eq!(bucket.label("le"), Some("+Inf"));
        assert_eq!(bucket.labels_without("le"), [("http_route", "a,b \"c\" \\d}")]);
        assert_eq!(bucket.value, 3.0);
        assert_eq!(bucket.written_series(), r#"http_route="a,b \"c\" \\d}""#);
        assert_eq!(families[1].samples[2].suffix, "_sum");
        assert_eq!(families[1].samples[2].value, 1.25);
    }

    #[test]
    fn lines_it_cannot_read_are_skipped() {
        let text = "# TYPE x counter\nx{a=\"unterminated} 1\nx 2\nx{a=\"1\"} not-a-number\n";
        let families = read(text);
        assert_eq!(families[0].samples.len(), 1);
        assert_eq!(families[0].samples[0].value, 2.0);
    }
}
