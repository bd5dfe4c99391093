//! Which routes a request may take, by the literal segments its path starts with.

use std::collections::HashMap;

/// The routes a request may take, by the segments its path starts with: a tree of the literal
/// segments each route's path condition begins with (`api`, `v1`, `books` of
/// `/api/v1/books/{id}`). A request's path walks it as deep as its own segments go, and may
/// take the routes along the way, with those that take any path, in config order. Routing tries
/// only these, not every route, and the first that matches still wins: a route whose literal
/// segments the path does not start with could never have matched. So a table of a thousand
/// routes under one `/api/v1/` costs a request about what a table of a few would.
#[derive(Debug)]
pub(crate) struct RouteIndex {
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    /// The routes a path whose walk ends here may take, in config order: those placed here or
    /// above.
    candidates: Box<[usize]>,
    children: HashMap<Box<str>, Node>,
}

impl RouteIndex {
    /// The index of routes whose paths start with the literal segments `prefixes`, in config
    /// order (none: the route may take any path).
    pub(crate) fn new(prefixes: &[Vec<&str>]) -> RouteIndex {
        let mut placed = Placed::default();
        for (route, segments) in prefixes.iter().enumerate() {
            let mut node = &mut placed;
            for &segment in segments {
                node = node.children.entry(segment).or_default();
            }
            node.routes.push(route);
        }
        RouteIndex {
            root: placed.into_node(&[]),
        }
    }

    /// The routes `path` may take, in config order.
    pub(crate) fn candidates(&self, path: &str) -> &[usize] {
        let mut node = &self.root;
        // A table whose routes name no segment (a catch-all) never hashes the path.
        for segment in segments(path) {
            if node.children.is_empty() {
                break;
            }
            match node.children.get(segment) {
                Some(child) => node = child,
                None => break,
            }
        }
        &node.candidates
    }
}

/// The routes as placed while the index is built: each at the node of its literal segments.
#[derive(Default)]
struct Placed<'a> {
    routes: Vec<usize>,
    children: HashMap<&'a str, Placed<'a>>,
}

impl Placed<'_> {
    /// The node, with the routes placed above it (`above`, in config order).
    fn into_node(self, above: &[usize]) -> Node {
        let mut candidates = [above, &self.routes].concat();
        candidates.sort_unstable();
        let children = self
            .children
            .into_iter()
            .map(|(segment, child)| (Box::from(segment), child.into_node(&candidates)))
            .collect();
        Node {
            candidates: candidates.into(),
            children,
        }
    }
}

/// The segments of a path: `books`, `7` of `/books/7`; one empty segment for `/`.
pub(crate) fn segments(path: &str) -> std::str::Split<'_, char> {
    path.strip_prefix('/').unwrap_or(path).split('/')
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
            PathMatch::Exact("/api/v2/users".into()),
            template("/api/{version}/x"),
            template("/api/v2/users/{id}"),
            PathMatch::Prefix("/api/v2/users/7".into()),
        ]
    }

    const PATHS: [&str; 19] = [
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
        "/api/v2",
        "/api/v2/users",
        "/api/v2/users/7",
        "/api/v2/users/7/x",
        "/api/v3/x",
        "/api/v2/x/y",
        "//api",
    ];

    /// Every route that matches a path is among its candidates, in order: the index never
    /// changes which route wins.
    #[test]
    fn a_path_takes_the_first_route_that_matches_as_without_the_index() {
        let patterns = patterns();
        let segments: Vec<Vec<&str>> = patterns.iter().map(PathMatch::literal_segments).collect();
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
    fn a_route_is_placed_at_the_literal_segments_all_its_paths_start_with() {
        let patterns = patterns();
        let placed: Vec<Vec<&str>> = patterns.iter().map(PathMatch::literal_segments).collect();
        let expected: [&[&str]; 14] = [
            &["api"],
            &[],
            &["books"],
            &["books"],
            &[],
            &[],
            &["api", "v2"],
            &[""],
            &["files"],
            &["apix"],
            &["api", "v2", "users"],
            &["api"],
            &["api", "v2", "users"],
            &["api", "v2", "users", "7"],
        ];
        assert_eq!(placed, expected);
        let index = RouteIndex::new(&placed);
        // `/nowhere` is named by no route: it may take only the routes that take any path.
        assert_eq!(index.candidates("/nowhere"), [1, 4, 5]);
        assert_eq!(index.candidates("/books/7"), [1, 2, 3, 4, 5]);
        // The walk goes as deep as the path's segments are in the tree.
        assert_eq!(index.candidates("/api/v3/x"), [0, 1, 4, 5, 11]);
        assert_eq!(index.candidates("/api/v2/users/8"), [0, 1, 4, 5, 6, 10, 11, 12]);
        assert_eq!(
            index.candidates("/api/v2/users/7/x"),
            [0, 1, 4, 5, 6, 10, 11, 12, 13]
        );
    }
}
