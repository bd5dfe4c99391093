//! Credentials kept out of the URLs that spans carry. OpenTelemetry's HTTP conventions ask that
//! `url.query` and `url.full` replace the values of query parameters known to hold credentials
//! with `REDACTED`: the keys and signatures of signed URLs, and here also every parameter a route
//! reads an API key from (`auth.api_key.query`). The rest of the query is kept as it was sent.

use crate::query::{self, Edit};
use std::borrow::Cow;

/// The parameters OpenTelemetry's conventions name: the access key and signatures of AWS, Azure
/// and Google Cloud signed URLs.
const SIGNED_URL_PARAMS: [&str; 4] = ["AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"];

/// The query parameters whose values spans never show, beside [`SIGNED_URL_PARAMS`].
#[derive(Debug, Default)]
pub(crate) struct QuerySecrets {
    /// The parameters the routes read API keys from, decoded, as the routes compare them.
    api_key_params: Box<[Box<str>]>,
}

impl QuerySecrets {
    pub(crate) fn new<'a>(api_key_params: impl IntoIterator<Item = &'a str>) -> QuerySecrets {
        let mut names: Vec<Box<str>> = api_key_params.into_iter().map(Box::from).collect();
        names.sort_unstable();
        names.dedup();
        QuerySecrets {
            api_key_params: names.into(),
        }
    }

    /// `query` with the value of each secret parameter replaced by `REDACTED`; `query` itself
    /// when it has none.
    pub(crate) fn redact<'q>(&self, query: &'q str) -> Cow<'q, str> {
        query::edit(query, |name| {
            let secret =
                SIGNED_URL_PARAMS.contains(&name) || self.api_key_params.iter().any(|n| **n == *name);
            match secret {
                true => Edit::Mask("REDACTED"),
                false => Edit::Keep,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_url_and_api_key_parameters_are_redacted() {
        let secrets = QuerySecrets::new(["api_key", "token", "api_key"]);
        assert!(matches!(secrets.redact("page=2&KEY=3"), Cow::Borrowed(_)));
        assert_eq!(
            secrets.redact("page=2&api%5Fkey=s3cret&token=t&sort=asc"),
            "page=2&api%5Fkey=REDACTED&token=REDACTED&sort=asc"
        );
        assert_eq!(
            secrets.redact("X-Goog-Signature=abc&sig=def&Signature=g&AWSAccessKeyId=AKIA&signature=h"),
            "X-Goog-Signature=REDACTED&sig=REDACTED&Signature=REDACTED&AWSAccessKeyId=REDACTED&signature=h"
        );
    }
}
