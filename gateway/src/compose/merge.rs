//! The composed response: one JSON object with each call's result under the call's name, in
//! config order, and, when some calls failed, an `errors` list saying which and why.
//!
//! Results are spliced in as the upstreams sent them (they were checked to be JSON when they
//! arrived), so merging costs a copy, not a parse and a re-serialization.

use super::{Call, CallError};
use bytes::Bytes;
use serde_json::{json, Value};

/// The merged body, and whether it is partial (some call has no result). Each outcome is the
/// call's JSON text, or why there is none.
pub(crate) fn merged_body<'a>(
    outcomes: impl Iterator<Item = (&'a Call, Result<&'a Bytes, &'a CallError>)> + Clone,
) -> (Bytes, bool) {
    let size: usize = outcomes
        .clone()
        .map(|(c, o)| c.name.len() + o.map_or(0, Bytes::len) + 4)
        .sum();
    let mut body = Vec::with_capacity(size + 2);
    let mut errors = Vec::new();
    body.push(b'{');
    for (call, outcome) in outcomes {
        match outcome {
            Ok(json) => {
                push_key(&mut body, &call.name);
                body.extend_from_slice(json);
            }
            Err(error) => errors.push(error_entry(call, error)),
        }
    }
    let partial = !errors.is_empty();
    if partial {
        push_key(&mut body, "errors");
        body.extend_from_slice(Value::Array(errors).to_string().as_bytes());
    }
    body.push(b'}');
    (Bytes::from(body), partial)
}

/// `"name":`, after a comma unless it is the first member. Call names are plain words
/// (checked at load), so they need no escaping.
fn push_key(body: &mut Vec<u8>, name: &str) {
    if body.len() > 1 {
        body.push(b',');
    }
    body.push(b'"');
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(b"\":");
}

fn error_entry(call: &Call, error: &CallError) -> Value {
    let mut entry = json!({
        "call": &*call.name,
        "code": error.code(),
        "message": error.describe(call),
    });
    if let CallError::Status(status) = error {
        entry["status"] = json!(status);
    }
    entry
}
