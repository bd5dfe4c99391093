//! Editing a query string parameter by parameter, leaving the rest as the client wrote it. A
//! parameter's name is compared decoded, as `application/x-www-form-urlencoded` decodes it
//! (`api%5Fkey` is `api_key`), which is how the gateway reads an API key from the query. Used to
//! take credentials out of the request that goes upstream and out of the URLs that spans show.

use std::borrow::Cow;

/// What becomes of one parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edit {
    Keep,
    Remove,
    /// Its value is replaced by this text (a parameter without a value is kept as it is).
    Mask(&'static str),
}

/// `query` with each parameter edited as `choose` says for its decoded name; `query` itself when
/// every parameter is kept.
pub(crate) fn edit<'q>(query: &'q str, choose: impl Fn(&str) -> Edit) -> Cow<'q, str> {
    let edit_of = |pair: &str| {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        match form_urlencoded::parse(name.as_bytes()).next() {
            Some((decoded, _)) => choose(&decoded),
            None => Edit::Keep,
        }
    };
    if query.split('&').all(|pair| edit_of(pair) == Edit::Keep) {
        return Cow::Borrowed(query);
    }
    let mut out = String::with_capacity(query.len());
    let mut first = true;
    for pair in query.split('&') {
        let edited = match (edit_of(pair), pair.split_once('=')) {
            (Edit::Remove, _) => continue,
            (Edit::Mask(mask), Some((name, _))) => Cow::Owned(format!("{name}={mask}")),
            _ => Cow::Borrowed(pair),
        };
        if !first {
            out.push('&');
        }
        first = false;
        out.push_str(&edited);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_key(name: &str) -> Edit {
        match name == "key" {
            true => Edit::Mask("X"),
            false => Edit::Keep,
        }
    }

    fn remove_key(name: &str) -> Edit {
        match name == "key" {
            true => Edit::Remove,
            false => Edit::Keep,
        }
    }

    #[test]
    fn a_query_with_nothing_to_edit_is_borrowed_as_it_is() {
        for kept in ["page=2&sort=asc", "monkey=1&key_id=2&KEY=3", "=key&&", ""] {
            assert!(matches!(edit(kept, mask_key), Cow::Borrowed(q) if q == kept));
        }
    }

    #[test]
    fn masking_replaces_values_and_keeps_everything_else() {
        assert_eq!(edit("a=1&key=s3cret&b=%20", mask_key), "a=1&key=X&b=%20");
        assert_eq!(edit("k%65y=1&key=&key", mask_key), "k%65y=X&key=X&key");
    }

    #[test]
    fn removing_drops_every_pair_of_the_name_and_its_separator() {
        assert_eq!(edit("key=1", remove_key), "");
        assert_eq!(edit("key=1&a=2", remove_key), "a=2");
        assert_eq!(edit("a=2&key=1&key&b=3&key=4", remove_key), "a=2&b=3");
        assert_eq!(edit("a=2&&key=1", remove_key), "a=2&");
    }
}
