//! What path a matched request is forwarded with.

use super::matcher::Params;

#[derive(Debug)]
pub(crate) enum PathRewrite {
    Keep,
    /// Removes a leading prefix (`/api/books` → `/books`); an emptied path becomes `/`.
    StripPrefix(String),
    /// Builds the path from a template with the match's captures: `/v2/books/{id}`.
    Template(Vec<Segment>),
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    Literal(String),
    Capture(String),
}

impl PathRewrite {
    /// The new path, or `None` when the path stays as it is.
    pub(crate) fn apply(&self, path: &str, params: &Params<'_>) -> Option<String> {
        match self {
            PathRewrite::Keep => None,
            PathRewrite::StripPrefix(prefix) => match path.strip_prefix(prefix.as_str()) {
                Some(rest) if rest.starts_with('/') => Some(rest.to_owned()),
                Some(rest) => Some(format!("/{rest}")),
                None => None,
            },
            PathRewrite::Template(segments) => {
                let mut out = String::with_capacity(path.len());
                for segment in segments {
                    match segment {
                        Segment::Literal(text) => out.push_str(text),
                        Segment::Capture(name) => {
                            let value = params.iter().find(|(k, _)| k == name).map_or("", |(_, v)| *v);
                            out.push_str(value);
                        }
                    }
                }
                Some(out)
            }
        }
    }
}

/// Compiles a rewrite template such as `/v2/books/{id}`.
pub(crate) fn parse_rewrite(template: &str) -> Result<PathRewrite, String> {
    if !template.starts_with('/') {
        return Err(format!("`{template}` must start with `/`"));
    }
    parse_template(template).map(PathRewrite::Template)
}

/// The capture names of a template, in order.
pub(crate) fn capture_names(template: &str) -> Result<Vec<String>, String> {
    let segments = parse_template(template)?;
    Ok(segments
        .into_iter()
        .filter_map(|s| match s {
            Segment::Capture(name) => Some(name),
            Segment::Literal(_) => None,
        })
        .collect())
}

/// Splits `/v2/books/{id}` into literals and captures; `{*rest}` captures like `{rest}`.
fn parse_template(template: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            segments.push(Segment::Literal(rest[..open].to_owned()));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in `{template}`"))?;
        let name = after[..close].trim_start_matches('*');
        if name.is_empty() {
            return Err(format!("empty capture name in `{template}`"));
        }
        segments.push(Segment::Capture(name.to_owned()));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        segments.push(Segment::Literal(rest.to_owned()));
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_prefix_keeps_a_leading_slash() {
        let strip = PathRewrite::StripPrefix("/api".into());
        assert_eq!(strip.apply("/api/books", &vec![]).as_deref(), Some("/books"));
        assert_eq!(strip.apply("/api", &vec![]).as_deref(), Some("/"));
        assert_eq!(strip.apply("/other", &vec![]), None);
    }

    #[test]
    fn template_substitutes_captures() {
        let rewrite = PathRewrite::Template(parse_template("/v2/books/{id}/info").unwrap());
        assert_eq!(
            rewrite.apply("/books/7", &vec![("id", "7")]).as_deref(),
            Some("/v2/books/7/info")
        );
        assert!(parse_template("/x/{id").is_err());
        assert!(parse_template("/x/{}").is_err());
    }
}
