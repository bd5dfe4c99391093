//! Transformations a route applies to what passes through it: headers added, set or removed
//! (with variables such as `${request_id}`), the upstream path rewritten by a regex with
//! captures, and JSON bodies edited (fields added, removed, renamed, by JSON Pointer) within a
//! size bound. Everything is compiled at load; applying one touches no config string.

mod headers;
mod json;
mod template;

pub(crate) use headers::HeaderEdits;
pub(crate) use json::JsonEdits;
pub(crate) use template::{pieces, Piece, Template, Vars};

use regex::Regex;

#[derive(Debug, Default)]
pub(crate) struct Transform {
    pub(crate) request_headers: HeaderEdits,
    pub(crate) response_headers: HeaderEdits,
    pub(crate) path: Option<PathRegex>,
    pub(crate) request_body: Option<JsonEdits>,
    pub(crate) response_body: Option<JsonEdits>,
}

/// `pattern` matched against the upstream path; `replacement` may use `$1` or `${name}`.
#[derive(Debug)]
pub(crate) struct PathRegex {
    pub(crate) pattern: Regex,
    pub(crate) replacement: String,
}

impl PathRegex {
    /// The rewritten path, or `None` when the pattern does not match (the path is kept).
    pub(crate) fn apply(&self, path: &str) -> Option<String> {
        self.pattern
            .is_match(path)
            .then(|| self.pattern.replace(path, self.replacement.as_str()).into_owned())
    }
}
