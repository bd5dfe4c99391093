//! Validation of `consumers:` and of routes' `auth:`.

use super::error::Problems;
use super::raw::{RawAuth, RawConsumer, Text};
use super::values::header_name;
use crate::auth::jwt::Provider;
use crate::auth::{Allow, ClaimRule, Consumer, Consumers, KeyHash, KeyPlace, RouteAuth};
use http::header::{HeaderName, HeaderValue};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

const DEFAULT_KEY_HEADER: &str = "x-api-key";

pub(super) fn build_consumers(p: &mut Problems, raw: &[RawConsumer]) -> Arc<Consumers> {
    let mut names = HashSet::new();
    let mut by_certificate = HashMap::new();
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
        for (k, text) in consumer.client_certs.iter().enumerate() {
            let name: Arc<str> = text.trim().into();
            if name.is_empty() || by_certificate.insert(name.clone(), i).is_some() {
                let message = format!("`{name}` is empty or another consumer's (or listed twice)");
                p.at(text.span(), format!("{field}.client_certs[{k}]"), message);
            }
        }
        list.push(Arc::new(Consumer {
            name: name.into(),
            groups: consumer.groups.iter().map(|g| Arc::from(g.trim())).collect(),
        }));
    }
    let by_name = list
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect();
    Arc::new(Consumers {
        by_name,
        by_certificate,
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
    providers: &HashMap<String, Arc<Provider>>,
    mutual_tls: bool,
) -> Arc<RouteAuth> {
    let jwt = raw.jwt.as_ref().and_then(|name| {
        let found = providers.get(name.trim()).cloned();
        if found.is_none() {
            let message = format!("no provider in `jwt_providers` is named `{}`", name.trim());
            p.at(name.span(), format!("{field}.jwt"), message);
        }
        found
    });
    let client_cert = raw.client_cert.as_ref().is_some_and(|on| **on);
    if let Some(on) = raw.client_cert.as_ref().filter(|on| ***on && !mutual_tls) {
        let message = "client certificates are asked for by `tls.client_auth`, which this config has not";
        p.at(on.span(), format!("{field}.client_cert"), message);
    }
    // API keys are taken when asked for, or when nothing else is (`auth: {}`).
    let others = raw.jwt.is_some() || client_cert;
    let api_key = (raw.api_key.is_some() || !others).then(|| key_place(p, field, raw));
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
        scopes: raw.scopes.iter().map(|s| Box::from(s.trim())).collect(),
        claims: raw
            .claims
            .iter()
            .map(|(name, values)| ClaimRule {
                name: name.as_str().into(),
                values: values.iter().map(|v| Box::from(v.trim())).collect(),
            })
            .collect(),
    };
    if raw.jwt.is_none() && (!allow.scopes.is_empty() || !allow.claims.is_empty()) {
        p.at(
            raw.scopes
                .first()
                .map_or(&marked_yaml::Span::new_blank(), |s| s.span()),
            format!("{field}.scopes"),
            "scopes and claims come from tokens: name a provider in `jwt`",
        );
    }
    Arc::new(RouteAuth {
        consumers: consumers.clone(),
        challenge: challenge(api_key.as_ref(), jwt.is_some()),
        api_key,
        jwt,
        client_cert,
        optional: raw.optional.unwrap_or(false),
        allow,
    })
}

fn key_place(p: &mut Problems, field: &str, raw: &RawAuth) -> KeyPlace {
    let source = raw.api_key.as_ref();
    let header = match source.and_then(|s| s.header.as_ref()) {
        Some(text) => header_name(p, &format!("{field}.api_key.header"), text),
        None if source.is_some_and(|s| s.query.is_some()) => None,
        None => Some(HeaderName::from_static(DEFAULT_KEY_HEADER)),
    };
    let query = source.and_then(|s| s.query.as_ref()).map(|q| q.trim().into());
    KeyPlace { header, query }
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

/// `Bearer realm="lookout"` for tokens (RFC 6750); `ApiKey realm="lookout", header="x-api-key"`
/// for keys: the scheme is not registered, but it tells a client where the key goes;
/// `ClientCertificate realm="lookout"` (unregistered too) when only a certificate will do.
fn challenge(api_key: Option<&KeyPlace>, jwt: bool) -> HeaderValue {
    if jwt {
        return HeaderValue::from_static("Bearer realm=\"lookout\"");
    }
    if api_key.is_none() {
        return HeaderValue::from_static("ClientCertificate realm=\"lookout\"");
    }
    let place = match api_key.map(|k| (&k.header, &k.query)) {
        Some((Some(header), _)) => format!(", header=\"{header}\""),
        Some((None, Some(query))) => format!(", query=\"{query}\""),
        _ => String::new(),
    };
    HeaderValue::try_from(format!("ApiKey realm=\"lookout\"{place}"))
        .unwrap_or(HeaderValue::from_static("ApiKey realm=\"lookout\""))
}
