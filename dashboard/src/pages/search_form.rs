//! The list of requests' search, as an address's query: read into a [`Search`] (every problem
//! named with its field), and written back into the addresses of the list's pages.

use super::query_value;
use lookout_analytics::analysis::search::{Cursor, Outcome, Search};
use serde::Deserialize;
use std::net::IpAddr;
use std::time::UNIX_EPOCH;

/// The status choices: the value in the address, and what the form shows.
pub(super) const STATUSES: [(&str, &str); 10] = [
    ("", "any status"),
    ("failed", "failed: 5xx or the gateway's error"),
    ("server_error", "server errors: 5xx or a failed gRPC call"),
    ("refused", "refused by a policy: auth, rate limit, ..."),
    ("slo_missed", "missed its route's objective (slo:)"),
    ("1xx", "1xx"),
    ("2xx", "2xx"),
    ("3xx", "3xx"),
    ("4xx", "4xx"),
    ("5xx", "5xx"),
];

/// The address's query, as typed: it is shown back in the form, also when it is refused.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct Form {
    pub(super) id: String,
    pub(super) route: String,
    pub(super) status: String,
    pub(super) slower_than: String,
    pub(super) path: String,
    pub(super) client: String,
    pub(super) consumer: String,
    pub(super) since: String,
    pub(super) until: String,
    pub(super) after: String,
}

impl Form {
    /// The request id or trace id to go to, when one was given.
    pub(super) fn id(&self) -> &str {
        self.id.trim()
    }

    /// Whether this is a page after the first (it goes on from a place in the list).
    pub(super) fn pages_on(&self) -> bool {
        !self.after.trim().is_empty()
    }

    /// The search the form asks for, or every problem with it.
    pub(super) fn search(&self) -> Result<Search, Vec<String>> {
        let mut p = Problems::default();
        let outcome = p.read("status", &self.status, outcome_of);
        let slower_than_us = p.read("slower_than", &self.slower_than, duration_us);
        let path_prefix = p.read("path", &self.path, path_prefix);
        let client_ip = p.read("client", &self.client, client_ip);
        let since_us = p.read("since", &self.since, moment_us);
        let until_us = p.read("until", &self.until, end_us);
        let after = p.read("after", &self.after, |text| {
            text.parse::<Cursor>()
                .map_err(|error| format!("{error}, got {text:?}"))
        });
        if let (Some(since), Some(until)) = (since_us, until_us) {
            if since > until {
                p.0.push("since: later than until".to_owned());
            }
        }
        if !p.0.is_empty() {
            return Err(p.0);
        }
        Ok(Search {
            route: given(&self.route),
            outcome: outcome.unwrap_or_default(),
            slower_than_us,
            path_prefix,
            client_ip,
            consumer: given(&self.consumer),
            // The next pages go on from where the one before ended; the first, from `until`.
            after: after.or(until_us.map(Cursor::from_moment)),
            since_us,
        })
    }

    /// The address of the list with this search, from `after` on.
    pub(super) fn address(&self, after: Option<Cursor>) -> String {
        let after = after.map(|cursor| cursor.to_string()).unwrap_or_default();
        // Where and when first, then what: an anomaly's link reads `route`, its window, its kind.
        let fields = [
            ("route", self.route.trim()),
            ("since", self.since.trim()),
            ("until", self.until.trim()),
            ("status", self.status.trim()),
            ("slower_than", self.slower_than.trim()),
            ("path", self.path.trim()),
            ("client", self.client.trim()),
            ("consumer", self.consumer.trim()),
            ("after", after.as_str()),
        ];
        let query: Vec<String> = fields
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| format!("{name}={}", query_value(value)))
            .collect();
        format!("/dashboard/requests?{}", query.join("&"))
    }
}

/// The problems of a search, collected so that all are named at once.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    /// The field's value, when it was given, as `read` reads it; else a problem named with the
    /// field.
    fn read<T>(
        &mut self,
        field: &str,
        text: &str,
        read: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = given(text)?;
        read(&text)
            .map_err(|message| self.0.push(format!("{field}: {message}")))
            .ok()
    }
}

fn given(value: &str) -> Option<String> {
    Some(value.trim()).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// The outcome a status choice names.
fn outcome_of(status: &str) -> Result<Outcome, String> {
    let class = || {
        let class = status.strip_suffix("xx")?.parse::<u8>().ok()?;
        (1..=5).contains(&class).then_some(Outcome::Class(class))
    };
    match status {
        "any" => Ok(Outcome::Any),
        "failed" => Ok(Outcome::Failed),
        "server_error" => Ok(Outcome::ServerError),
        "refused" => Ok(Outcome::Refused),
        "slo_missed" => Ok(Outcome::MissedObjective),
        _ => class().ok_or_else(|| {
            let choices: Vec<_> = STATUSES.iter().skip(1).map(|(value, _)| *value).collect();
            format!("expected one of {}, got {status:?}", choices.join(", "))
        }),
    }
}

fn duration_us(text: &str) -> Result<u64, String> {
    humantime::parse_duration(text)
        .map(|d| d.as_micros().min(u128::from(u64::MAX)) as u64)
        .map_err(|error| format!("{error} in {text:?}: write a duration such as 250ms or 2s"))
}

fn path_prefix(text: &str) -> Result<String, String> {
    match text.starts_with('/') {
        true => Ok(text.to_owned()),
        false => Err(format!("a path starts with /, got {text:?}")),
    }
}

fn client_ip(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("expected an IP address such as 10.0.0.7 or ::1, got {text:?}"))
}

/// A moment, in microseconds since the Unix epoch: given in milliseconds since the epoch (as
/// Grafana's `${__from}` and `${__to}` are), or as a UTC date and time, `2026-12-06 23:40`,
/// with seconds and a fraction when wanted.
fn moment_us(text: &str) -> Result<i64, String> {
    let problem =
        || format!("expected milliseconds since 1970 or a UTC time such as 2026-12-06 23:40, got {text:?}");
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .ok()
            .and_then(|ms| ms.checked_mul(1_000))
            .ok_or_else(problem);
    }
    // `YYYY-MM-DD HH:MM`, as people write it (and as a datetime field sends it), has no seconds.
    let whole = match text.len() {
        16 => format!("{text}:00"),
        _ => text.to_owned(),
    };
    let moment = humantime::parse_rfc3339_weak(&whole).map_err(|_| problem())?;
    let since_epoch = moment.duration_since(UNIX_EPOCH).map_err(|_| problem())?;
    i64::try_from(since_epoch.as_micros()).map_err(|_| problem())
}

/// The last microsecond of a moment given as the end of a search: a millisecond (Grafana's
/// `${__to}`) is taken whole; a time, as written.
fn end_us(text: &str) -> Result<i64, String> {
    let start = moment_us(text)?;
    match text.bytes().all(|b| b.is_ascii_digit()) {
        true => Ok(start + 999),
        false => Ok(start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::Query;

    /// The form of an address's query, as axum reads it.
    fn parsed(query: &str) -> Form {
        let uri: axum::http::Uri = format!("/dashboard/requests?{query}").parse().expect("uri");
        Query::<Form>::try_from_uri(&uri).expect("a form").0
    }

    fn form(pairs: &[(&str, &str)]) -> Form {
        let query: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", query_value(v)))
            .collect();
        parsed(&query.join("&"))
    }

    #[test]
    fn a_search_is_read_from_the_form_and_written_back_into_its_address() {
        let typed = form(&[
            ("route", " books & co "),
            ("status", "5xx"),
            ("slower_than", "1s 500ms"),
            ("path", "/books/"),
            ("client", "::ffff:10.0.0.7"),
            ("consumer", "acme"),
            ("since", "2026-12-06 23:40"),
            ("until", "1796600460123"),
        ]);
        let search = typed.search().expect("a search");
        assert_eq!(
            search,
            Search {
                route: Some("books & co".into()),
                outcome: Outcome::Class(5),
                slower_than_us: Some(1_500_000),
                path_prefix: Some("/books/".into()),
                client_ip: Some("::ffff:10.0.0.7".parse().expect("an address")),
                consumer: Some("acme".into()),
                after: Some(Cursor::from_moment(1_796_600_460_123_999)),
                since_us: Some(1_796_600_400_000_000),
            }
        );
        let cursor = Cursor {
            ts_us: 17,
            request_key: 4,
        };
        let next = typed.address(Some(cursor));
        let again = parsed(next.split_once('?').expect("a query").1);
        assert!(again.pages_on() && !typed.pages_on());
        assert_eq!(
            again.search(),
            Ok(Search {
                after: Some(cursor),
                ..search
            })
        );
        assert_eq!(Form::default().search(), Ok(Search::default()));
        assert_eq!(Form::default().address(None), "/dashboard/requests?");
    }

    #[test]
    fn every_problem_of_a_search_is_named_with_its_field() {
        let problems = form(&[
            ("status", "6xx"),
            ("slower_than", "soon"),
            ("path", "books"),
            ("client", "10.0.0"),
            ("since", "yesterday"),
            ("until", "2026-13-01 00:00"),
            ("after", "yesterday"),
        ])
        .search()
        .expect_err("refused");
        let fields: Vec<_> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            fields,
            [
                "status",
                "slower_than",
                "path",
                "client",
                "since",
                "until",
                "after"
            ],
            "{problems:?}"
        );
        assert!(
            problems[0]
                .contains("failed, server_error, refused, slo_missed, 1xx, 2xx, 3xx, 4xx, 5xx, got \"6xx\""),
            "{problems:?}"
        );
        assert!(problems[1].contains("250ms"), "{problems:?}");
        let backwards = form(&[("since", "2026-12-06 23:40:01"), ("until", "2026-12-06 23:40")]);
        assert_eq!(
            backwards.search(),
            Err(vec!["since: later than until".to_owned()])
        );
        for status in ["0xx", "9xx", "xx", "5XX", "500"] {
            assert!(outcome_of(status).is_err(), "{status}");
        }
        assert_eq!(outcome_of("failed"), Ok(Outcome::Failed));
        assert_eq!(outcome_of("server_error"), Ok(Outcome::ServerError));
        assert_eq!(outcome_of("refused"), Ok(Outcome::Refused));
        assert_eq!(outcome_of("slo_missed"), Ok(Outcome::MissedObjective));
        assert_eq!(outcome_of("any"), Ok(Outcome::Any));
    }

    #[test]
    fn durations_are_read_as_people_and_the_anomaly_links_write_them() {
        assert_eq!(duration_us("250ms"), Ok(250_000));
        assert_eq!(duration_us("42000us"), Ok(42_000));
        assert_eq!(duration_us("1s 500ms"), Ok(1_500_000));
        assert!(duration_us("fast").is_err());
    }

    #[test]
    fn moments_are_read_in_milliseconds_or_as_utc_times() {
        assert_eq!(moment_us("1796600000123"), Ok(1_796_600_000_123_000));
        assert_eq!(
            end_us("1796600000123"),
            Ok(1_796_600_000_123_999),
            "the whole millisecond"
        );
        assert_eq!(end_us("2026-12-06 23:40"), moment_us("2026-12-06 23:40"));
        let minute = moment_us("2026-12-06 23:40").expect("a minute");
        assert_eq!(moment_us("2026-12-06T23:40:00Z"), Ok(minute));
        assert_eq!(moment_us("2026-12-06 23:40:05.5"), Ok(minute + 5_500_000));
        assert!(moment_us("99999999999999999999").is_err(), "out of range");
        assert!(moment_us("2026-12-06").is_err(), "a day is not a moment");
    }
}
