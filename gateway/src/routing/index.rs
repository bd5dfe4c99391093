//! Which routes a request may take, by the first segment of its path.

use super::matcher::first_segment;
use std::collections::HashMap;

/// The routes a request may take, by the first segment of its path (`books` of `/books/7`):
/// those whose path condition names that segment, with those that take any first segment, in
/// config order. Routing tries only these, not every route, and the first that matches still
/// wins: a route that names another first segment could never have matched. With a thousand
/// prefix routes, a request for the last one was served at about three quarters of the rate of
/// one for the first.
#[derive(Debug)]
pub(crate) struct RouteIndex {
    by_segment: HashMap<Box<str>, Box<[usize]>>,
    /// The routes that take any first segment: all a path whose segment no route names may take.
    any: Box<[usize]>,
}

impl RouteIndex {
    /// The index of routes whose first segments are `segments`, in config order (`None`: any).
    pub(crate) fn new(segments: &[Option<&str>]) -> RouteIndex {
        let taking = |segment: Option<&str>| -> Box<[usize]> {
            (0..segments.len())
                .filter(|&i| segments[i].is_none() || segments[i] == segment)
                .collect()
        };
        let mut by_segment = HashMap::new();
        for segment in segments.iter().flatten() {
            if !by_segment.contains_key(*segment) {
                by_segment.insert(Box::from(*segment), taking(Some(segment)));
            }
        }
        RouteIndex {
            by_segment,
            any: taking(None),
        }
    }

    /// The routes `path` may take, in config order.
    pub(crate) fn candidates(&self, path: &str) -> &[usize] {
        // No route names a segment (a catch-all table): no hashing of the path.
        if self.by_segment.is_empty() {
            return &self.any;
        }
        self.by_segment
            .get(first_segment(path))
            .map_or(&self.any, |routes| routes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::PathMatch;

    fn template(text: &str) -> PathMatch {
        let mut router = matchit::Router::new();
        router.insert(text, ()).expect("a template");
        PathMatch::Template(router, text.to_owned())
    }

    fn patterns() -> Vec<PathMatch> {
        vec![
            PathMatch::Prefix("/api".into()),
            PathMatch::Any,
            template("/books/{id}"),
            PathMatch::Exact("/books".into()),
            PathMatch::Prefix("/".into()),
            template("/{tenant}/orders"),
            PathMatch::Prefix("/api/v2/".into()),
            PathMatch::Exact("/".into()),
            template("/files/{*rest}"),
            PathMatch::Prefix("/apix".into()),
        ]
    }

    const PATHS: [&str; 12] = [
        "/",
        "/api",
        "/api/",
        "/api/v2/x",
        "/apix",
        "/apixy",
        "/books",
        "/books/7",
        "/files/a/b",
        "/acme/orders",
        "/nowhere",
        "/api%2Fv2",
    ];

    /// Every route that matches a path is among its candidates, in order: the index never
    /// changes which route wins.
    #[test]
    fn a_path_takes_the_first_route_that_matches_as_without_the_index() {
        let patterns = patterns();
        let segments: Vec<Option<&str>> = patterns.iter().map(PathMatch::first_segment).collect();
        let index = RouteIndex::new(&segments);
        for path in PATHS {
            let matching: Vec<usize> = (0..patterns.len())
                .filter(|&i| patterns[i].matches(path).is_some())
                .collect();
            let candidates = index.candidates(path);
            let kept: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| patterns[i].matches(path).is_some())
                .collect();
            assert_eq!(kept, matching, "{path}");
            assert!(
                candidates.windows(2).all(|w| w[0] < w[1]),
                "in config order: {path}"
            );
        }
    }

    #[test]
    fn a_route_names_a_first_segment_only_when_all_its_paths_share_it() {
        let named: Vec<Option<String>> = patterns()
            .iter()
            .map(|p| p.first_segment().map(str::to_owned))
            .collect();
        let expected = [
            Some("api"),
            None,
            Some("books"),
            Some("books"),
            None,
            None,
            Some("api"),
            Some(""),
            Some("files"),
            Some("apix"),
        ];
        assert_eq!(named, expected.map(|s| s.map(str::to_owned)));
        // `/nowhere` is named by no route: it may take only the routes that take any path.
        let index = RouteIndex::new(&expected);
        assert_eq!(index.candidates("/nowhere"), [1, 4, 5]);
        assert_eq!(index.candidates("/books/7"), [1, 2, 3, 4, 5]);
    }
}
