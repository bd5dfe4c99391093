//! Charts as SVG, laid out here and drawn by askama templates (which escape every label): line
//! charts for series over time, bar charts for distributions and stacked counts, and the
//! waterfall of a request's path.

use askama::Template;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 200.0;
/// Room for the axis labels.
const LEFT: f64 = 64.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;
const TICKS: usize = 4;
// Colours that mean the same on every chart: red is failure, amber a warning (a client's error,
// a p95), green success, blue the plain figure, violet the request as a whole, grey the rest.
pub(crate) const BLUE: &str = "#2563eb";
pub(crate) const AMBER: &str = "#d97706";
pub(crate) const RED: &str = "#dc2626";
pub(crate) const GREEN: &str = "#059669";
pub(crate) const VIOLET: &str = "#7c3aed";
pub(crate) const GREY: &str = "#6b7280";

pub(crate) struct Tick {
    pub(crate) at: f64,
    pub(crate) label: String,
}

pub(crate) struct Line {
    pub(crate) name: String,
    pub(crate) color: &'static str,
    /// SVG `points` of each polyline: a series is drawn in runs, broken where it has no value.
    pub(crate) runs: Vec<String>,
    /// The values with none beside them, which a polyline would not show: drawn as dots.
    pub(crate) dots: Vec<(f64, f64)>,
}

/// A series' runs of values (polylines' `points`) and its lone values (dots), placed by `at`.
fn runs_and_dots(
    values: &[(i64, f64)],
    at: impl Fn((i64, f64)) -> (f64, f64),
) -> (Vec<String>, Vec<(f64, f64)>) {
    let (mut runs, mut dots) = (Vec::new(), Vec::new());
    for run in values.split(|(_, y)| !y.is_finite()) {
        match run {
            [] => {}
            [alone] => dots.push(at(*alone)),
            _ => {
                let points: Vec<String> = run
                    .iter()
                    .map(|&value| at(value))
                    .map(|(x, y)| format!("{x:.1},{y:.1}"))
                    .collect();
                runs.push(points.join(" "));
            }
        }
    }
    (runs, dots)
}

#[derive(Template)]
#[template(path = "line_chart.html")]
pub(crate) struct LineChart {
    pub(crate) title: String,
    pub(crate) width: f64,
    pub(crate) height: f64,
    pub(crate) left: f64,
    pub(crate) bottom: f64,
    pub(crate) lines: Vec<Line>,
    pub(crate) x_ticks: Vec<Tick>,
    pub(crate) y_ticks: Vec<Tick>,
    pub(crate) empty: bool,
}

/// Series sharing an x axis (microseconds since the epoch) and a y axis.
pub(crate) struct Series<'a> {
    pub(crate) name: &'a str,
    pub(crate) color: &'static str,
    pub(crate) values: Vec<f64>,
}

impl LineChart {
    /// `xs` are the times of the values of every series; `label_x` and `label_y` format ticks.
    pub(crate) fn new(
        title: &str,
        xs: &[i64],
        series: Vec<Series<'_>>,
        label_x: fn(i64) -> String,
        label_y: fn(f64) -> String,
    ) -> LineChart {
        let (x_min, x_max) = (xs.first().copied().unwrap_or(0), xs.last().copied().unwrap_or(1));
        let y_max = nice_max(
            series
                .iter()
                .flat_map(|s| s.values.iter().copied())
                .fold(0.0, f64::max),
        );
        let x_span = (x_max - x_min).max(1) as f64;
        let plot_w = WIDTH - LEFT - 8.0;
        let plot_h = HEIGHT - BOTTOM - TOP;
        let x_of = |x: i64| LEFT + (x - x_min) as f64 / x_span * plot_w;
        let y_of = |y: f64| TOP + plot_h - y / y_max * plot_h;
        let at = |(x, y): (i64, f64)| (x_of(x), y_of(y));
        let lines = series
            .iter()
            .map(|s| {
                let values: Vec<(i64, f64)> = xs.iter().copied().zip(s.values.iter().copied()).collect();
                let (runs, dots) = runs_and_dots(&values, at);
                Line {
                    name: s.name.to_owned(),
                    color: s.color,
                    runs,
                    dots,
                }
            })
            .collect();
        let x_ticks = (0..=TICKS)
            .map(|i| {
                let x = x_min + (x_span as i64) * i as i64 / TICKS as i64;
                Tick {
                    at: x_of(x),
                    label: label_x(x),
                }
            })
            .collect();
        let y_ticks = (0..=TICKS)
            .map(|i| {
                let y = y_max * i as f64 / TICKS as f64;
                Tick {
                    at: y_of(y),
                    label: label_y(y),
                }
            })
            .collect();
        LineChart {
            title: title.to_owned(),
            width: WIDTH,
            height: HEIGHT,
            left: LEFT,
            bottom: HEIGHT - BOTTOM,
            lines,
            x_ticks,
            y_ticks,
            // Idle buckets have no latency: a window of them has nothing to draw.
            empty: !series.iter().flat_map(|s| &s.values).any(|y| y.is_finite()),
        }
    }
}

/// A round number at or above `max`, so the top tick reads well.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|&v| v >= max)
        .unwrap_or(10.0 * magnitude)
}

pub(crate) struct Bar {
    pub(crate) x: f64,
    pub(crate) y: f64,
    pub(crate) width: f64,
    pub(crate) height: f64,
    pub(crate) color: &'static str,
    pub(crate) tip: String,
}

#[derive(Template)]
#[template(path = "bar_chart.html")]
pub(crate) struct BarChart {
    pub(crate) title: String,
    pub(crate) width: f64,
    pub(crate) height: f64,
    pub(crate) left: f64,
    pub(crate) bottom: f64,
    pub(crate) bars: Vec<Bar>,
    pub(crate) x_labels: Vec<Tick>,
    pub(crate) y_ticks: Vec<Tick>,
    pub(crate) legend: Vec<(String, &'static str)>,
    pub(crate) empty: bool,
}

/// One column of a bar chart: its label and its stacked parts, `(part, value)`.
pub(crate) struct Column {
    pub(crate) label: String,
    pub(crate) parts: Vec<(usize, f64)>,
}

impl BarChart {
    /// Stacked columns; `parts` names the stack's parts and their colours.
    pub(crate) fn new(
        title: &str,
        parts: &[(&str, &'static str)],
        columns: Vec<Column>,
        label_y: fn(f64) -> String,
    ) -> BarChart {
        let y_max = nice_max(
            columns
                .iter()
                .map(|c| c.parts.iter().map(|p| p.1).sum::<f64>())
                .fold(0.0, f64::max),
        );
        let plot_w = WIDTH - LEFT - 8.0;
        let plot_h = HEIGHT - BOTTOM - TOP;
        let slot = plot_w / columns.len().max(1) as f64;
        let mut bars = Vec::new();
        let mut x_labels = Vec::new();
        let label_every = (columns.len() / 8).max(1);
        for (i, column) in columns.iter().enumerate() {
            let x = LEFT + i as f64 * slot;
            let mut base = 0.0;
            for &(part, value) in &column.parts {
                let height = value / y_max * plot_h;
                bars.push(Bar {
                    x: x + slot * 0.1,
                    y: TOP + plot_h - base - height,
                    width: slot * 0.8,
                    height,
                    color: parts.get(part).map_or(GREY, |p| p.1),
                    tip: format!(
                        "{} {}: {}",
                        column.label,
                        parts.get(part).map_or("", |p| p.0),
                        crate::format::count(value)
                    ),
                });
                base += height;
            }
            if i % label_every == 0 {
                x_labels.push(Tick {
                    at: x + slot / 2.0,
                    label: column.label.clone(),
                });
            }
        }
        let y_ticks = (0..=TICKS)
            .map(|i| {
                let y = y_max * i as f64 / TICKS as f64;
                Tick {
                    at: TOP + plot_h - y / y_max * plot_h,
                    label: label_y(y),
                }
            })
            .collect();
        BarChart {
            title: title.to_owned(),
            width: WIDTH,
            height: HEIGHT,
            left: LEFT,
            bottom: HEIGHT - BOTTOM,
            empty: columns.is_empty(),
            bars,
            x_labels,
            y_ticks,
            legend: parts
                .iter()
                .map(|&(name, color)| (name.to_owned(), color))
                .collect(),
        }
    }
}

/// One step of a request's path in the waterfall.
pub(crate) struct WaterfallRow {
    pub(crate) label: String,
    pub(crate) detail: String,
    pub(crate) x: f64,
    pub(crate) width: f64,
    /// The part of the bar spent opening a connection, shaded at its start; 0 for none.
    pub(crate) lead_width: f64,
    pub(crate) y: f64,
    pub(crate) color: &'static str,
    pub(crate) detail_at: DetailPlace,
}

/// Where a bar's detail text goes: right of the bar where it fits, else left of it, else inside
/// it, so that no detail runs off the chart.
pub(crate) struct DetailPlace {
    pub(crate) x: f64,
    pub(crate) anchor: &'static str,
    pub(crate) class: &'static str,
}

/// The waterfall's column of step names, left of the bars.
const WATERFALL_LABELS: f64 = 220.0;
/// About the width of one character of the charts' 11px text, in the charts' units.
const CHAR_WIDTH: f64 = 6.2;

impl DetailPlace {
    fn for_bar(x: f64, width: f64, detail: &str) -> DetailPlace {
        let text = detail.chars().count() as f64 * CHAR_WIDTH;
        let (anchor, class) = ("end", "muted");
        if x + width + 4.0 + text <= WIDTH {
            DetailPlace {
                x: x + width + 4.0,
                anchor: "start",
                class,
            }
        } else if x - 4.0 - text >= WATERFALL_LABELS {
            DetailPlace {
                x: x - 4.0,
                anchor,
                class,
            }
        } else {
            DetailPlace {
                x: x + width - 4.0,
                anchor,
                class: "inside",
            }
        }
    }
}

#[derive(Template)]
#[template(path = "waterfall.html")]
pub(crate) struct Waterfall {
    pub(crate) width: f64,
    pub(crate) height: f64,
    pub(crate) rows: Vec<WaterfallRow>,
    pub(crate) ticks: Vec<Tick>,
}

/// A step to draw: label, detail, start and duration (µs from the request's start), failed.
pub(crate) struct Span {
    pub(crate) label: String,
    pub(crate) detail: String,
    pub(crate) start_us: u64,
    pub(crate) duration_us: u64,
    /// Of `duration_us`, the time spent opening a connection first.
    pub(crate) lead_us: u64,
    pub(crate) failed: bool,
}

impl Waterfall {
    pub(crate) fn new(total_us: u64, spans: Vec<Span>) -> Waterfall {
        const LABEL: f64 = WATERFALL_LABELS;
        const ROW: f64 = 26.0;
        let plot_w = WIDTH - LABEL - 8.0;
        let total = total_us
            .max(
                spans
                    .iter()
                    .map(|s| s.start_us + s.duration_us)
                    .max()
                    .unwrap_or(1),
            )
            .max(1) as f64;
        let rows: Vec<_> = spans
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let x = LABEL + s.start_us as f64 / total * plot_w;
                let width = (s.duration_us as f64 / total * plot_w).max(1.5);
                let lead_width = (s.lead_us.min(s.duration_us) as f64 / total * plot_w).min(width);
                WaterfallRow {
                    x,
                    width,
                    lead_width,
                    y: 20.0 + i as f64 * ROW,
                    color: if s.failed {
                        RED
                    } else if i == 0 {
                        VIOLET
                    } else {
                        BLUE
                    },
                    detail_at: DetailPlace::for_bar(x, width, &s.detail),
                    label: s.label,
                    detail: s.detail,
                }
            })
            .collect();
        let ticks = (0..=TICKS)
            .map(|i| Tick {
                at: LABEL + plot_w * i as f64 / TICKS as f64,
                label: crate::format::duration(total * i as f64 / TICKS as f64),
            })
            .collect();
        Waterfall {
            width: WIDTH,
            height: 28.0 + rows.len() as f64 * ROW,
            rows,
            ticks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{LineChart, Series, Span, Waterfall, RED, WIDTH};

    fn chart(values: Vec<f64>) -> LineChart {
        let xs: Vec<i64> = (0..values.len() as i64).collect();
        let series = vec![Series {
            name: "p99",
            color: RED,
            values,
        }];
        LineChart::new("t", &xs, series, |x| x.to_string(), |y| y.to_string())
    }

    #[test]
    fn a_line_breaks_where_its_series_has_no_value() {
        let broken = chart(vec![1.0, 2.0, f64::NAN, f64::NAN, 3.0]);
        let runs: Vec<usize> = broken.lines[0]
            .runs
            .iter()
            .map(|r| r.split(' ').count())
            .collect();
        assert_eq!(runs, [2], "one run of two values");
        assert_eq!(broken.lines[0].dots.len(), 1, "and a value alone, as a dot");
        assert!(!broken.empty);
        assert!(chart(vec![f64::NAN; 3]).empty, "nothing to draw");
    }

    fn span(start_us: u64, duration_us: u64, detail: &str) -> Span {
        Span {
            label: "step".into(),
            detail: detail.into(),
            start_us,
            duration_us,
            lead_us: 0,
            failed: false,
        }
    }

    #[test]
    fn every_detail_stays_on_the_chart() {
        let detail = "105 µs · 127.0.0.1:35197 200";
        let chart = Waterfall::new(
            1_000,
            vec![
                span(0, 1_000, "200 in 1.0 ms"),
                span(0, 10, detail),
                span(900, 100, detail),
            ],
        );
        let places: Vec<(&str, &str)> = chart
            .rows
            .iter()
            .map(|r| (r.detail_at.anchor, r.detail_at.class))
            .collect();
        // The whole request inside its bar, a short early step right of it, a late one left.
        assert_eq!(places, [("end", "inside"), ("start", "muted"), ("end", "muted")]);
        for row in &chart.rows {
            assert!(row.detail_at.x <= WIDTH, "{}", row.detail_at.x);
        }
    }

    #[test]
    fn a_connect_time_shades_the_start_of_its_bar() {
        let connecting = Span {
            lead_us: 250,
            ..span(500, 500, "500 µs")
        };
        let chart = Waterfall::new(1_000, vec![span(0, 1_000, "1.0 ms"), connecting]);
        let (whole, attempt) = (&chart.rows[0], &chart.rows[1]);
        assert_eq!(whole.lead_width, 0.0);
        assert!(
            (attempt.lead_width * 2.0 - attempt.width).abs() < 1e-9,
            "half of it"
        );
    }
}
