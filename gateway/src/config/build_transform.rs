//! Validation of routes' `transform:`.

use super::error::Problems;
use super::raw::{RawHeaderEdits, RawJsonEdits, RawPathRegex, RawTransform, Text};
use super::values::bytes;
use crate::transform::{HeaderEdits, JsonEdits, PathRegex, Template, Transform};
use http::header::HeaderName;
use std::collections::BTreeMap;
use std::sync::Arc;

const DEFAULT_MAX_BODY: u64 = 64 * 1024;

pub(super) fn build_transform(p: &mut Problems, field: &str, raw: &RawTransform) -> Arc<Transform> {
    let headers = |p: &mut Problems, name: &str, raw: &Option<RawHeaderEdits>| {
        raw.as_ref()
            .map(|edits| header_edits(p, &format!("{field}.{name}"), edits))
            .unwrap_or_default()
    };
    Arc::new(Transform {
        request_headers: headers(p, "request_headers", &raw.request_headers),
        response_headers: headers(p, "response_headers", &raw.response_headers),
        path: raw
            .path
            .as_ref()
            .and_then(|path| path_regex(p, &format!("{field}.path"), path)),
        request_body: raw
            .request_body
            .as_ref()
            .map(|edits| json_edits(p, &format!("{field}.request_body"), edits)),
        response_body: raw
            .response_body
            .as_ref()
            .map(|edits| json_edits(p, &format!("{field}.response_body"), edits)),
    })
}

fn header_edits(p: &mut Problems, field: &str, raw: &RawHeaderEdits) -> HeaderEdits {
    let templates =
        |p: &mut Problems, kind: &str, map: &BTreeMap<String, Text>| -> Vec<(HeaderName, Template)> {
            map.iter()
                .filter_map(|(name, value)| {
                    let at = format!("{field}.{kind}.{name}");
                    let name = header_name(p, &at, name, value)?;
                    match Template::parse(value) {
                        Ok(template) => Some((name, template)),
                        Err(message) => {
                            p.at(value.span(), at, message);
                            None
                        }
                    }
                })
                .collect()
        };
    HeaderEdits {
        remove: raw
            .remove
            .iter()
            .enumerate()
            .filter_map(|(i, name)| header_name(p, &format!("{field}.remove[{i}]"), name, name))
            .collect(),
        set: templates(p, "set", &raw.set),
        add: templates(p, "add", &raw.add),
    }
}

fn header_name(p: &mut Problems, field: &str, name: &str, at: &Text) -> Option<HeaderName> {
    match HeaderName::try_from(name.trim().to_ascii_lowercase()) {
        Ok(name) => Some(name),
        Err(_) => {
            p.at(at.span(), field, format!("`{name}` is not a header name"));
            None
        }
    }
}

fn path_regex(p: &mut Problems, field: &str, raw: &RawPathRegex) -> Option<PathRegex> {
    match regex::Regex::new(&raw.pattern) {
        Ok(pattern) => Some(PathRegex {
            pattern,
            replacement: raw.replace.to_string(),
        }),
        Err(error) => {
            p.at(
                raw.pattern.span(),
                format!("{field}.pattern"),
                format!("invalid regex: {error}"),
            );
            None
        }
    }
}

fn json_edits(p: &mut Problems, field: &str, raw: &RawJsonEdits) -> JsonEdits {
    let pointer = |p: &mut Problems, at: String, text: &str, span: &Text| {
        if text.starts_with('/') {
            Some(text.to_owned())
        } else {
            p.at(
                span.span(),
                at,
                format!("`{text}` is not a JSON Pointer (e.g. `/meta/source`)"),
            );
            None
        }
    };
    let add = raw
        .add
        .iter()
        .filter_map(|(to, value)| {
            let to = pointer(p, format!("{field}.add.{to}"), to, value)?;
            let value =
                serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
            Some((to, value))
        })
        .collect();
    let remove = raw
        .remove
        .iter()
        .enumerate()
        .filter_map(|(i, text)| pointer(p, format!("{field}.remove[{i}]"), text, text))
        .collect();
    let rename = raw
        .rename
        .iter()
        .filter_map(|(from, to)| {
            let from = pointer(p, format!("{field}.rename.{from}"), from, to)?;
            let to = pointer(p, format!("{field}.rename.{from}"), to, to)?;
            Some((from, to))
        })
        .collect();
    let max_size = raw
        .max_size
        .as_ref()
        .and_then(|size| bytes(p, &format!("{field}.max_size"), size))
        .unwrap_or(DEFAULT_MAX_BODY);
    JsonEdits {
        rename,
        remove,
        add,
        max_size,
    }
}
