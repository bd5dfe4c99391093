//! Validation of `consumers:` and of routes' `auth:`.

use super::error::Problems;
use super::raw::{RawAuth, RawConsumer, Text};
use crate::auth::{Allow, Consumer, Consumers, KeyHash, RouteAuth};
use http::header::{HeaderName, HeaderValue};
use std::collections::HashSet;
use std::sync::Arc;

const DEFAULT_KEY_HEADER: &str = "x-api-key";

pub(super) fn build_consumers(p: &mut Problems, raw: &[RawConsumer]) -> Arc<Consumers> {
    let mut names = HashSet::new();
    let mut list = Vec::with_capacity(raw.len());
    let (mut keys, mut owners) = (Vec::new(), Vec::new());
    for (i, consumer) in raw.iter().enumerate() {
        let field = format!("consumers[{i}]");
        let name = consumer.name.trim();
        if name.is_empty() || !names.insert(name) {
            let message = format!("`{name}` is empty or names another consumer too");
            p.at(consumer.name.span(), format!("{field}.name"), message);
        }
        for (k, text) in consumer.api_keys.iter().enumerate() {
            let field = format!("{field}.api_keys[{k}]");
            match KeyHash::parse(text.trim()) {
                Ok(hash) if keys.contains(&hash) => {
                    p.at(
                        text.span(),
                        field,
                        "this key is another consumer's (or listed twice)",
                    );
                }
                Ok(hash) => {
                    keys.push(hash);
                    owners.push(i);
                }
                Err(message) => p.at(text.span(), field, message),
            }
        }
        list.push(Arc::new(Consumer {
            name: name.into(),
            groups: consumer.groups.iter().map(|g| Arc::from(g.trim())).collect(),
        }));
    }
    Arc::new(Consumers {
        list: list.into(),
        keys: keys.into(),
        owners: owners.into(),
    })
}

pub(super) fn build_route_auth(
    p: &mut Problems,
    field: &str,
    raw: &RawAuth,
    consumers: &Arc<Consumers>,
) -> Arc<RouteAuth> {
    let source = raw.api_key.as_ref();
    let header = match source.and_then(|s| s.header.as_ref()) {
        Some(text) => header_name(p, &format!("{field}.api_key.header"), text),
        None if source.is_some_and(|s| s.query.is_some()) => None,
        None => Some(HeaderName::from_static(DEFAULT_KEY_HEADER)),
    };
    let query: Option<Box<str>> = source.and_then(|s| s.query.as_ref()).map(|q| q.trim().into());
    let allow = Allow {
        consumers: known(
            p,
            &format!("{field}.consumers"),
            &raw.consumers,
            consumers,
            |c, n| &*c.name == n,
        ),
        groups: known(p, &format!("{field}.groups"), &raw.groups, consumers, |c, n| {
            c.groups.iter().any(|g| &**g == n)
        }),
    };
    Arc::new(RouteAuth {
        consumers: consumers.clone(),
        challenge: challenge(header.as_ref(), query.as_deref()),
        header,
        query,
        optional: raw.optional.unwrap_or(false),
        allow,
    })
}

fn header_name(p: &mut Problems, field: &str, text: &Text) -> Option<HeaderName> {
    HeaderName::try_from(text.trim())
        .map_err(|_| {
            p.at(
                text.span(),
                field,
                format!("`{}` is not a valid header name", &**text),
            )
        })
        .ok()
}

/// The names in `raw` that some consumer answers to (by `matches`); the others are errors, as
/// a typo there would lock everyone out without a word.
fn known(
    p: &mut Problems,
    field: &str,
    raw: &[Text],
    consumers: &Consumers,
    matches: impl Fn(&Consumer, &str) -> bool,
) -> Box<[Arc<str>]> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, text)| {
            let name = text.trim();
            if consumers.list.iter().any(|c| matches(c, name)) {
                Some(Arc::from(name))
            } else {
                let message = format!("no consumer answers to `{name}`");
                p.at(text.span(), format!("{field}[{i}]"), message);
                None
            }
        })
        .collect()
}

/// `ApiKey realm="lookout", header="x-api-key"`: the scheme is not registered, but it tells a
/// client where the key goes.
fn challenge(header: Option<&HeaderName>, query: Option<&str>) -> HeaderValue {
    let place = match (header, query) {
        (Some(header), _) => format!(", header=\"{header}\""),
        (None, Some(query)) => format!(", query=\"{query}\""),
        (None, None) => String::new(),
    };
    HeaderValue::try_from(format!("ApiKey realm=\"lookout\"{place}"))
        .unwrap_or(HeaderValue::from_static("ApiKey realm=\"lookout\""))
}
