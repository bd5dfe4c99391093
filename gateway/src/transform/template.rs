//! Header value templates: literal text with `${variable}`s filled in per request.

use http::header::HeaderValue;
use std::net::IpAddr;

/// What a template can say about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Var {
    RequestId,
    ClientIp,
    Route,
    Consumer,
    Host,
    Method,
    Path,
}

const VARS: [(&str, Var); 7] = [
    ("request_id", Var::RequestId),
    ("client_ip", Var::ClientIp),
    ("route", Var::Route),
    ("consumer", Var::Consumer),
    ("host", Var::Host),
    ("method", Var::Method),
    ("path", Var::Path),
];

#[derive(Debug, Clone)]
pub(crate) enum Part {
    Text(String),
    Var(Var),
}

#[derive(Debug, Clone)]
pub(crate) enum Template {
    /// No variables: the value is made once.
    Fixed(HeaderValue),
    Parts(Vec<Part>),
}

/// One request's values for the variables.
pub(crate) struct Vars<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) client_ip: IpAddr,
    pub(crate) route: &'a str,
    /// Empty until a consumer is identified.
    pub(crate) consumer: &'a str,
    pub(crate) host: &'a str,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
}

/// A piece of text with `${...}` placeholders: literal text, or a placeholder's name.
pub(crate) enum Piece<'t> {
    Text(&'t str),
    Name(&'t str),
}

/// Splits `text` at its `${name}` placeholders (header templates, composition call paths).
pub(crate) fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            pieces.push(Piece::Text(&rest[..start]));
        }
        let Some(end) = rest[start..].find('}') else {
            return Err(format!("`${{` without a closing `}}` in `{text}`"));
        };
        pieces.push(Piece::Name(&rest[start + 2..start + end]));
        rest = &rest[start + end + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

impl Template {
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        let parts = pieces(text)?
            .into_iter()
            .map(|piece| match piece {
                Piece::Text(text) => Ok(Part::Text(text.to_owned())),
                Piece::Name(name) => match VARS.iter().find(|(n, _)| *n == name) {
                    Some((_, var)) => Ok(Part::Var(*var)),
                    None => {
                        let known: Vec<&str> = VARS.iter().map(|(n, _)| *n).collect();
                        Err(format!(
                            "unknown variable `${{{name}}}`; known: {}",
                            known.join(", ")
                        ))
                    }
                },
            })
            .collect::<Result<Vec<Part>, String>>()?;
        match parts.as_slice() {
            [] => Ok(Template::Fixed(HeaderValue::from_static(""))),
            [Part::Text(text)] => HeaderValue::try_from(text.as_str())
                .map(Template::Fixed)
                .map_err(|_| format!("`{text}` is not a valid header value")),
            _ => Ok(Template::Parts(parts)),
        }
    }

    /// The value for this request; `None` if a variable's value cannot be a header value.
    pub(crate) fn render(&self, vars: &Vars<'_>) -> Option<HeaderValue> {
        let parts = match self {
            Template::Fixed(value) => return Some(value.clone()),
            Template::Parts(parts) => parts,
        };
        let mut value = String::new();
        for part in parts {
            match part {
                Part::Text(text) => value.push_str(text),
                Part::Var(Var::ClientIp) => value.push_str(&vars.client_ip.to_string()),
                Part::Var(var) => value.push_str(match var {
                    Var::RequestId => vars.request_id,
                    Var::Route => vars.route,
                    Var::Consumer => vars.consumer,
                    Var::Host => vars.host,
                    Var::Method => vars.method,
                    Var::Path => vars.path,
                    Var::ClientIp => "",
                }),
            }
        }
        HeaderValue::try_from(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_in_variables_and_refuse_unknown_ones() {
        let vars = Vars {
            request_id: "r-1",
            client_ip: IpAddr::from([10, 0, 0, 9]),
            route: "books",
            consumer: "",
            host: "example.com",
            method: "GET",
            path: "/books/1",
        };
        let template = Template::parse("${route}@${client_ip} (${request_id})").expect("valid");
        assert_eq!(template.render(&vars).expect("value"), "books@10.0.0.9 (r-1)");
        assert!(matches!(Template::parse("plain"), Ok(Template::Fixed(_))));
        assert!(Template::parse("${user}")
            .unwrap_err()
            .contains("unknown variable `${user}`"));
        assert!(Template::parse("${route").is_err());
    }
}
