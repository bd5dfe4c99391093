//! The attack filter: SQL injection and XSS in paths, query strings and (the start of) bodies,
//! detected by libinjection (its Rust port, `libinjectionrs`), which tokenizes each value as
//! SQL or HTML would and matches the token shapes real attacks have, rather than by regexes
//! that both miss encoded attacks and refuse ordinary text.
//!
//! Values are checked one by one, decoded as the upstream would read them: each path segment,
//! each query parameter's name and value, each form field, each string of a JSON body.

use percent_encoding::percent_decode;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Refuse the request (403) and record why.
    Block,
    /// Let it through, recording what was seen.
    Log,
}

#[derive(Debug)]
pub(crate) struct AttackFilter {
    pub(crate) mode: Mode,
    /// How much of a body is read and checked; the rest streams on unchecked.
    pub(crate) inspect_body: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqli,
    Xss,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    Path,
    Query,
    Body,
}

/// An attack seen in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Threat {
    pub(crate) kind: Kind,
    pub(crate) place: Place,
}

impl Threat {
    pub(crate) fn kind_label(self) -> &'static str {
        match self.kind {
            Kind::Sqli => "sqli",
            Kind::Xss => "xss",
        }
    }

    pub(crate) fn place_label(self) -> &'static str {
        match self.place {
            Place::Path => "path",
            Place::Query => "query",
            Place::Body => "body",
        }
    }
}

impl fmt::Display for Threat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Sqli => "SQL injection",
            Kind::Xss => "cross-site scripting",
        };
        write!(f, "{kind} in the {}", self.place_label())
    }
}

/// Checks the path's segments and the query's parameters.
pub(crate) fn scan_uri(uri: &http::Uri) -> Option<Threat> {
    let in_path = uri
        .path()
        .split('/')
        .filter(|segment| !segment.is_empty())
        .find_map(|segment| detect(&percent_decode(segment.as_bytes()).collect::<Vec<u8>>()));
    if let Some(kind) = in_path {
        return Some(Threat {
            kind,
            place: Place::Path,
        });
    }
    let query = uri.query()?;
    scan_form(query.as_bytes()).map(|kind| Threat {
        kind,
        place: Place::Query,
    })
}

/// Checks the start of a body, read by its type: form fields, JSON strings, or else the text
/// as one value.
pub(crate) fn scan_body(content_type: Option<&str>, body: &[u8]) -> Option<Threat> {
    let essence = essence(content_type);
    let kind = if essence == "application/x-www-form-urlencoded" {
        scan_form(body)
    } else if essence == "application/json" || essence.ends_with("+json") {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(value) => scan_json(&value),
            // Cut off at the inspection bound, or not JSON at all: checked as text.
            Err(_) => detect(body),
        }
    } else if body.is_empty() || is_binary(&essence) {
        None
    } else {
        detect(body)
    };
    kind.map(|kind| Threat {
        kind,
        place: Place::Body,
    })
}

fn scan_form(form: &[u8]) -> Option<Kind> {
    form_urlencoded::parse(form)
        .find_map(|(name, value)| detect(name.as_bytes()).or_else(|| detect(value.as_bytes())))
}

fn scan_json(value: &serde_json::Value) -> Option<Kind> {
    match value {
        serde_json::Value::String(text) => detect(text.as_bytes()),
        serde_json::Value::Array(items) => items.iter().find_map(scan_json),
        serde_json::Value::Object(fields) => fields
            .iter()
            .find_map(|(name, value)| detect(name.as_bytes()).or_else(|| scan_json(value))),
        _ => None,
    }
}

/// Media types whose bytes are not text a browser or a database would read as such.
/// The media type without its parameters, in lower case (`""` when there is none).
fn essence(content_type: Option<&str>) -> String {
    content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Whether a body of this type is worth reading the start of: not one of a binary type, which
/// [`scan_body`] would skip anyway. Reading it would also hold up a stream whose client waits
/// for an answer before sending more (a gRPC call, which may stream both ways), for as long as
/// the inspection bound is not reached.
pub(crate) fn inspects_body(content_type: Option<&str>) -> bool {
    !is_binary(&essence(content_type))
}

fn is_binary(essence: &str) -> bool {
    ["image/", "audio/", "video/", "font/", "application/grpc"]
        .iter()
        .any(|prefix| essence.starts_with(prefix))
        || matches!(
            essence,
            "application/octet-stream" | "application/pdf" | "application/zip" | "application/gzip"
        )
}

fn detect(value: &[u8]) -> Option<Kind> {
    // Short plain words are the bulk of values and never an attack; skipping them keeps the
    // filter cheap on ordinary traffic.
    if value.len() < 3 || value.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    if libinjectionrs::detect_sqli(value).is_injection() {
        return Some(Kind::Sqli);
    }
    libinjectionrs::detect_xss(value)
        .is_injection()
        .then_some(Kind::Xss)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> http::Uri {
        text.parse().expect("uri")
    }

    #[test]
    fn classic_attacks_are_seen_where_they_are() {
        let sqli = scan_uri(&uri("/books?q=1%27%20OR%20%271%27%3D%271")).expect("sqli");
        assert_eq!((sqli.kind, sqli.place), (Kind::Sqli, Place::Query));
        let union = scan_uri(&uri("/books/1%20UNION%20SELECT%20password%20FROM%20users--")).expect("union");
        assert_eq!((union.kind, union.place), (Kind::Sqli, Place::Path));
        let xss = scan_uri(&uri("/search?q=%3Cscript%3Ealert(1)%3C/script%3E")).expect("xss");
        assert_eq!(xss.kind, Kind::Xss);
        let img = scan_uri(&uri("/search?q=%3Cimg%20src=x%20onerror=alert(1)%3E")).expect("img");
        assert_eq!(img.kind, Kind::Xss);
        let json = scan_body(Some("application/json"), br#"{"note": {"text": "x' OR 1=1 --"}}"#);
        assert_eq!(json.map(|t| (t.kind, t.place)), Some((Kind::Sqli, Place::Body)));
        let form = scan_body(
            Some("application/x-www-form-urlencoded"),
            b"name=%3Csvg%20onload%3Dalert(1)%3E",
        );
        assert_eq!(form.map(|t| t.kind), Some(Kind::Xss));
    }

    #[test]
    fn ordinary_traffic_passes() {
        for ordinary in [
            "/books/42",
            "/books?q=O%27Reilly&sort=-year&page=2",
            "/books?title=Select%20Poems%20of%201920&author=D%27Arcy",
            "/search?q=rock%20%26%20roll&lang=en-GB",
            "/search?q=1%20or%202%20people",
            "/users/jane.doe@example.com/orders?from=2026-01-01&to=2026-02-01",
            "/search?q=C%2B%2B%20%3E%20C",
            "/api/v2/items?ids=1,2,3&fields=name,price",
            "/notes?text=drop%20me%20a%20line",
        ] {
            assert_eq!(scan_uri(&uri(ordinary)), None, "{ordinary}");
        }
        let json = br#"{"title": "Where's my <b>bold</b> text?", "count": 3, "tags": ["a-b", "sql"]}"#;
        assert_eq!(scan_body(Some("application/json"), json), None);
        assert_eq!(scan_body(Some("image/png"), b"<script>"), None);
    }

    #[test]
    fn binary_bodies_and_grpc_calls_are_not_read() {
        assert!(inspects_body(Some("application/json; charset=utf-8")));
        assert!(inspects_body(None), "an untyped body is read as text");
        for binary in [
            "application/grpc",
            "application/grpc+proto",
            "Image/PNG",
            "application/zip",
        ] {
            assert!(!inspects_body(Some(binary)), "{binary}");
        }
    }
}
