//! JSON body edits by JSON Pointer (RFC 6901, as `serde_json` reads them): rename, remove,
//! then add (replacing a value already there). Bodies over the bound are not buffered.

use bytes::Bytes;
use serde_json::Value;

#[derive(Debug)]
pub(crate) struct JsonEdits {
    pub(crate) rename: Vec<(String, String)>,
    pub(crate) remove: Vec<String>,
    pub(crate) add: Vec<(String, Value)>,
    pub(crate) max_size: u64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum JsonEditError {
    #[error("the body is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("`{0}` names no place in the body's JSON")]
    NoSuchParent(String),
}

impl JsonEdits {
    pub(crate) fn apply(&self, body: &[u8]) -> Result<Bytes, JsonEditError> {
        let mut value: Value = serde_json::from_slice(body)?;
        for (from, to) in &self.rename {
            if let Some(moved) = take(&mut value, from) {
                put(&mut value, to, moved)?;
            }
        }
        for pointer in &self.remove {
            take(&mut value, pointer);
        }
        for (pointer, added) in &self.add {
            put(&mut value, pointer, added.clone())?;
        }
        Ok(Bytes::from(serde_json::to_vec(&value)?))
    }
}

/// `/a/b` → (`/a`, `b`), with `~1` and `~0` unescaped in the last token.
fn split(pointer: &str) -> Option<(&str, String)> {
    let (parent, last) = pointer.rsplit_once('/')?;
    Some((parent, last.replace("~1", "/").replace("~0", "~")))
}

fn take(value: &mut Value, pointer: &str) -> Option<Value> {
    let (parent, key) = split(pointer)?;
    match value.pointer_mut(parent)? {
        Value::Object(map) => map.remove(&key),
        Value::Array(items) => {
            let index: usize = key.parse().ok()?;
            (index < items.len()).then(|| items.remove(index))
        }
        _ => None,
    }
}

fn put(value: &mut Value, pointer: &str, new: Value) -> Result<(), JsonEditError> {
    let missing = || JsonEditError::NoSuchParent(pointer.to_owned());
    let (parent, key) = split(pointer).ok_or_else(missing)?;
    match value.pointer_mut(parent).ok_or_else(missing)? {
        Value::Object(map) => {
            map.insert(key, new);
            Ok(())
        }
        Value::Array(items) if key == "-" => {
            items.push(new);
            Ok(())
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_renamed_removed_and_added_by_pointer() {
        let edits = JsonEdits {
            rename: vec![("/title".into(), "/name".into())],
            remove: vec!["/internal".into(), "/tags/0".into()],
            add: vec![
                ("/meta/source".into(), json!("lookout")),
                ("/tags/-".into(), json!("new")),
            ],
            max_size: 1024,
        };
        let body = json!({"title": "Dune", "internal": 1, "tags": ["a", "b"], "meta": {}}).to_string();
        let edited: Value =
            serde_json::from_slice(&edits.apply(body.as_bytes()).expect("edits")).expect("json");
        assert_eq!(
            edited,
            json!({"name": "Dune", "tags": ["b", "new"], "meta": {"source": "lookout"}})
        );
        assert!(matches!(edits.apply(b"not json"), Err(JsonEditError::NotJson(_))));
        let nowhere = JsonEdits {
            add: vec![("/missing/field".into(), json!(1))],
            ..edits
        };
        assert!(matches!(
            nowhere.apply(b"{}"),
            Err(JsonEditError::NoSuchParent(_))
        ));
    }
}
