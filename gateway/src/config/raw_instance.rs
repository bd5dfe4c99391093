//! An upstream instance as written: `host:port`, or `{ address: host:port, weight: N }`.
//!
//! serde's untagged enums buffer their input and lose the line of each value, so the two forms
//! are told apart by hand: the entry is read as a [`Spanned`] node (its line), whose value is a
//! string or a map, and a map's fields are read spanned in their turn.

use super::raw::Text;
use marked_yaml::Spanned;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

#[derive(Debug, Clone)]
pub(crate) struct RawInstance {
    pub(crate) address: Text,
    /// Its share of its priority's requests against the others' (1 when left out).
    pub(crate) weight: Option<Spanned<u32>>,
}

/// The entry's value, before its line is attached to a bare address.
enum Form {
    Address(String),
    Weighted(RawInstance),
}

const FIELDS: &[&str] = &["address", "weight"];

impl<'de> Deserialize<'de> for RawInstance {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entry = Spanned::<Form>::deserialize(deserializer)?;
        let span = *entry.span();
        // Spanned gives no way to take its value out: the entry is copied (once, at load).
        Ok(match &*entry {
            Form::Address(address) => RawInstance {
                address: Spanned::new(span, address.clone()),
                weight: None,
            },
            Form::Weighted(instance) => instance.clone(),
        })
    }
}

impl<'de> Deserialize<'de> for Form {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FormVisitor)
    }
}

struct FormVisitor;

impl<'de> Visitor<'de> for FormVisitor {
    type Value = Form;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an instance: `host:port`, or `{ address: host:port, weight: N }`")
    }

    fn visit_str<E: de::Error>(self, address: &str) -> Result<Form, E> {
        Ok(Form::Address(address.to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Form, A::Error> {
        let (mut address, mut weight) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            let repeated = match key.as_str() {
                "address" => address.replace(map.next_value()?).is_some(),
                "weight" => weight.replace(map.next_value()?).is_some(),
                other => return Err(de::Error::unknown_field(other, FIELDS)),
            };
            if repeated {
                return Err(de::Error::custom(format!("duplicate field `{key}`")));
            }
        }
        let address = address.ok_or_else(|| de::Error::missing_field("address"))?;
        Ok(Form::Weighted(RawInstance { address, weight }))
    }
}
