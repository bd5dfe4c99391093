//! The path (and query) of a composition call: literal text with `${...}` filled in per request
//! from the route's path captures (`${path.id}`), the client's query (`${query.page}`) and the
//! JSON results of earlier calls (`${book.author.id}`, `${book.tags.0}`).
//!
//! Values are percent-encoded as one path segment, so a result can never add a `/`, a `?` or a
//! `..` to the path it is put in.

use super::CallError;
use crate::transform::{pieces, Piece};
use http::uri::PathAndQuery;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;
use std::borrow::Cow;

/// Everything but RFC 3986's unreserved characters is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug)]
pub(crate) struct PathTemplate {
    parts: Box<[Part]>,
}

#[derive(Debug)]
enum Part {
    Text(Box<str>),
    /// A capture of the route's path template, sent as the client wrote it.
    Capture(Box<str>),
    /// A query parameter of the client's request; empty when absent.
    Query(Box<str>),
    /// A field of an earlier call's result.
    Field {
        call: usize,
        /// The field as a JSON Pointer (`/author/id`).
        pointer: Box<str>,
        /// As written, for error messages (`book.author.id`).
        written: Box<str>,
    },
}

/// What a request offers its calls' paths.
pub(crate) struct Inputs<'a> {
    /// The route's path captures, by name.
    pub(crate) captures: &'a [(&'a str, &'a str)],
    pub(crate) query: Option<&'a str>,
}

impl PathTemplate {
    /// Parses `text`; `earlier` are the names of the calls before this one, `captures` the
    /// names the route's path template captures.
    pub(crate) fn parse(text: &str, earlier: &[&str], captures: &[String]) -> Result<PathTemplate, String> {
        if !text.starts_with('/') {
            return Err(format!("`{text}` must start with `/`"));
        }
        let parts = pieces(text)?
            .into_iter()
            .map(|piece| match piece {
                Piece::Text(text) => Ok(Part::Text(text.into())),
                Piece::Name(name) => reference(name, earlier, captures),
            })
            .collect::<Result<Box<[Part]>, String>>()?;
        let template = PathTemplate { parts };
        // Every value renders as unreserved characters, so a sample checks the literal text.
        let sample = template.render_with(
            |_| Ok(Cow::Borrowed("x")),
            &Inputs {
                captures: &[],
                query: None,
            },
        );
        match sample.map(PathAndQuery::try_from) {
            Ok(Ok(_)) => Ok(template),
            _ => Err(format!("`{text}` is not a valid path and query")),
        }
    }

    /// The earlier calls this path uses, each once.
    pub(crate) fn needs(&self) -> Vec<usize> {
        let mut needs: Vec<usize> = self
            .parts
            .iter()
            .filter_map(|part| match part {
                Part::Field { call, .. } => Some(*call),
                _ => None,
            })
            .collect();
        needs.sort_unstable();
        needs.dedup();
        needs
    }

    /// The path for one request; `result(call)` is an earlier call's JSON result.
    pub(crate) fn render<'v>(
        &self,
        inputs: &Inputs<'_>,
        result: impl Fn(usize) -> Option<&'v Value>,
    ) -> Result<PathAndQuery, CallError> {
        let path = self.render_with(
            |(call, pointer, written)| {
                let missing = || CallError::MissingField(written.into());
                match result(call)
                    .and_then(|value| value.pointer(pointer))
                    .ok_or_else(missing)?
                {
                    Value::String(text) => Ok(Cow::Borrowed(text.as_str())),
                    Value::Number(number) => Ok(Cow::Owned(number.to_string())),
                    Value::Bool(flag) => Ok(Cow::Owned(flag.to_string())),
                    _ => Err(missing()),
                }
            },
            inputs,
        )?;
        // Values are encoded and the text was checked at load: only a capture the client sent
        // could make this fail.
        PathAndQuery::try_from(path).map_err(|_| CallError::InvalidPath)
    }

    fn render_with<'v>(
        &self,
        field: impl Fn((usize, &str, &str)) -> Result<Cow<'v, str>, CallError>,
        inputs: &Inputs<'_>,
    ) -> Result<String, CallError> {
        let mut path = String::new();
        for part in self.parts.iter() {
            match part {
                Part::Text(text) => path.push_str(text),
                Part::Capture(name) => {
                    let value = inputs.captures.iter().find(|(n, _)| n == &&**name);
                    path.push_str(value.map_or("", |(_, v)| v));
                }
                Part::Query(name) => push_encoded(&mut path, &query_value(inputs.query, name)),
                Part::Field {
                    call,
                    pointer,
                    written,
                } => {
                    push_encoded(&mut path, &field((*call, pointer, written))?);
                }
            }
        }
        Ok(path)
    }
}

/// One `${...}`: `path.NAME`, `query.NAME` or `CALL.FIELD[.FIELD...]`.
fn reference(name: &str, earlier: &[&str], captures: &[String]) -> Result<Part, String> {
    let (head, tail) = name.split_once('.').unwrap_or((name, ""));
    if tail.is_empty() {
        return Err(format!(
            "`${{{name}}}` names no field; use `${{path.NAME}}`, `${{query.NAME}}` or `${{CALL.FIELD}}`"
        ));
    }
    match head {
        "path" if captures.iter().any(|c| c == tail) => Ok(Part::Capture(tail.into())),
        "path" => Err(format!(
            "`${{{name}}}`: the route's path template captures no `{tail}` (it captures: {})",
            captures.join(", ")
        )),
        "query" => Ok(Part::Query(tail.into())),
        call => match earlier.iter().position(|c| *c == call) {
            Some(index) => Ok(Part::Field {
                call: index,
                pointer: tail.split('.').fold(String::new(), |p, f| p + "/" + f).into(),
                written: name.into(),
            }),
            None => Err(format!(
                "`${{{name}}}`: `{call}` is not an earlier call (a call may use the results of the calls above it)"
            )),
        },
    }
}

fn query_value<'q>(query: Option<&'q str>, name: &str) -> Cow<'q, str> {
    query
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
        .unwrap_or_default()
}

fn push_encoded(path: &mut String, value: &str) {
    if value.bytes().all(|b| b == b'.') {
        // `.` and `..` are path segments of their own: encoded, they are only text.
        path.extend(std::iter::repeat_n("%2E", value.len()));
    } else {
        path.extend(utf8_percent_encode(value, SEGMENT));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Result<PathTemplate, String> {
        PathTemplate::parse(text, &["book"], &["id".to_owned()])
    }

    fn render(template: &PathTemplate, book: &Value) -> Result<String, CallError> {
        let inputs = Inputs {
            captures: &[("id", "7")],
            query: Some("lang=en%20GB&x=1"),
        };
        let path = template.render(&inputs, |call| (call == 0).then_some(book))?;
        Ok(path.as_str().to_owned())
    }

    #[test]
    fn captures_queries_and_fields_fill_the_path() {
        let template = parse("/authors/${book.author.id}/books/${path.id}?lang=${query.lang}").unwrap();
        let book = json!({"author": {"id": 42}});
        assert_eq!(
            render(&template, &book).unwrap(),
            "/authors/42/books/7?lang=en%20GB"
        );
        assert_eq!(template.needs(), vec![0]);
    }

    #[test]
    fn values_cannot_escape_their_segment() {
        let template = parse("/tags/${book.tag}").unwrap();
        let render_tag = |tag: &str| render(&template, &json!({ "tag": tag })).unwrap();
        assert_eq!(render_tag("a/b?c"), "/tags/a%2Fb%3Fc");
        assert_eq!(render_tag(".."), "/tags/%2E%2E");
        assert_eq!(render_tag("1.5"), "/tags/1.5");
    }

    #[test]
    fn array_indexes_and_missing_fields() {
        let template = parse("/tags/${book.tags.1}").unwrap();
        assert_eq!(
            render(&template, &json!({"tags": ["a", "b"]})).unwrap(),
            "/tags/b"
        );
        let missing = render(&template, &json!({"tags": []})).unwrap_err();
        assert!(matches!(missing, CallError::MissingField(field) if &*field == "book.tags.1"));
        let object = render(&template, &json!({"tags": [{}, {}]})).unwrap_err();
        assert!(matches!(object, CallError::MissingField(_)));
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        let error = |text: &str| parse(text).unwrap_err();
        assert!(error("books").contains("must start with `/`"));
        assert!(error("/a/${path.nope}").contains("captures no `nope`"));
        assert!(error("/a/${later.id}").contains("not an earlier call"));
        assert!(error("/a/${book}").contains("names no field"));
        assert!(error("/a/${book.id").contains("without a closing"));
        assert!(error("/a b/${book.id}").contains("not a valid path"));
    }
}
