//! Part of [`super::match_route`]: the path in [normal form](crate::routing::normal_form) before
//! the route is looked up, so that the route the gateway picks (and the policies it applies) are
//! those of the resource the upstream serves. Left as sent, `/public/../admin`, `/%61dmin` or
//! `//admin` would miss the `/admin` route and its authentication, and reach an upstream that
//! resolves them to `/admin` all the same. The query is left as sent, and the request's event
//! keeps the path as the client sent it.

use super::error::ProxyError;
use crate::routing::normal_form;
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};

pub(super) fn run(parts: &mut Parts) -> Result<(), ProxyError> {
    let Some(mut normal) = normal_form(parts.uri.path()) else {
        return Ok(());
    };
    if let Some(query) = parts.uri.query() {
        normal.push('?');
        normal.push_str(query);
    }
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.path_and_query = Some(PathAndQuery::try_from(normal).map_err(|_| invalid())?);
    parts.uri = Uri::from_parts(uri).map_err(|_| invalid())?;
    Ok(())
}

/// Never met: decoding unreserved characters and dropping segments keep a valid path valid.
fn invalid() -> ProxyError {
    ProxyError::BadRequest("the request path could not be normalized")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str) -> Parts {
        http::Request::get(target)
            .body(())
            .expect("request")
            .into_parts()
            .0
    }

    #[test]
    fn the_request_keeps_its_query_and_authority() {
        let mut parts = request("http://api.example/a/../b?x=/../%2e");
        run(&mut parts).expect("normalized");
        assert_eq!(parts.uri, "http://api.example/b?x=/../%2e");
        let mut parts = request("/%7b%7D|{}/./x");
        run(&mut parts).expect("normalized");
        assert_eq!(parts.uri, "/%7b%7D|{}/x");
    }
}
