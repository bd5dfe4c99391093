//! The normal form of a request's path, which routes match against and the upstream receives:
//! percent-encoded unreserved characters decoded (RFC 3986 §6.2.2.2, so `%2e%2e` is `..`), dot
//! segments removed (§5.2.4; `..` never climbs above the root), and runs of slashes merged into
//! one, as nginx does. Everything else is kept as sent: other percent-encodings (`%2F` stays a
//! character of its segment, not a separator).
//!
//! Written here rather than taken from a URI crate: those parse RFC 3986 URIs only, and hyper
//! accepts paths they refuse (`{`, `|`, `\`, raw UTF-8, a stray `%`), which must be normalized
//! all the same.

/// The normal form of `path`, when it is not already in it.
pub(crate) fn normal_form(path: &str) -> Option<String> {
    if !may_need_normalizing(path) {
        return None;
    }
    Some(normalize(path)).filter(|normal| normal != path)
}

/// A cheap test that passes over nearly every request: only a path with a percent sign, a dot
/// at a segment's start or an empty segment can change.
fn may_need_normalizing(path: &str) -> bool {
    let bytes = path.as_bytes();
    // One pass over the bytes: `contains` with a pattern sets up a searcher each time, which
    // costs more than the scan for paths this short.
    bytes.first() == Some(&b'/')
        && (bytes.contains(&b'%') || bytes.windows(2).any(|pair| matches!(pair, [b'/', b'/' | b'.'])))
}

/// The normal form of an origin-form path (one that starts with `/`).
fn normalize(path: &str) -> String {
    let decoded = decode_unreserved(path);
    let mut kept: Vec<&str> = Vec::new();
    let mut ends_in_directory = false;
    for segment in decoded.split('/').skip(1) {
        ends_in_directory = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            name => kept.push(name),
        }
    }
    let mut normal = String::with_capacity(decoded.len());
    for segment in &kept {
        normal.push('/');
        normal.push_str(segment);
    }
    if ends_in_directory || kept.is_empty() {
        normal.push('/');
    }
    normal
}

/// `%XX` decoded where XX is an unreserved character (ALPHA, DIGIT, `-`, `.`, `_`, `~`), which
/// means the same either way; any other escape, or a malformed one, is kept as it is.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut copied = 0;
    let mut at = 0;
    while let Some(offset) = path[at..].find('%') {
        let percent = at + offset;
        at = percent + 1;
        let Some(byte) = bytes.get(percent + 1..percent + 3).and_then(hex_byte) else {
            continue;
        };
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            decoded.push_str(&path[copied..percent]);
            decoded.push(char::from(byte));
            copied = percent + 3;
            at = copied;
        }
    }
    decoded.push_str(&path[copied..]);
    decoded
}

fn hex_byte(digits: &[u8]) -> Option<u8> {
    let value = |digit: u8| char::from(digit).to_digit(16);
    Some((value(digits[0])? * 16 + value(digits[1])?) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_removed_as_rfc_3986_says() {
        // RFC 3986 §5.2.4's examples, and its §5.4 ones whose base is a path's root.
        assert_eq!(normalize("/a/b/c/./../../g"), "/a/g");
        assert_eq!(normalize("/b/c/./g"), "/b/c/g");
        assert_eq!(normalize("/b/c/../g"), "/b/g");
        assert_eq!(normalize("/b/c/.."), "/b/");
        assert_eq!(normalize("/b/c/."), "/b/c/");
        assert_eq!(normalize("/../g"), "/g");
        assert_eq!(normalize("/.."), "/");
        assert_eq!(normalize("/g."), "/g.");
        assert_eq!(normalize("/.g/..g/g.."), "/.g/..g/g..");
    }

    #[test]
    fn encoded_dots_and_letters_are_what_they_encode() {
        assert_eq!(normalize("/public/%2e%2E/admin"), "/admin");
        assert_eq!(normalize("/public/.%2e/admin"), "/admin");
        assert_eq!(normalize("/%61dmin/%7Euser"), "/admin/~user");
    }

    #[test]
    fn other_escapes_and_malformed_ones_are_kept() {
        assert_eq!(normalize("/files/a%2Fb/../c"), "/files/c");
        assert_eq!(normalize("/files/..%2f..%2fadmin"), "/files/..%2f..%2fadmin");
        assert_eq!(normalize("/caf%C3%A9/100%/%zz/%2"), "/caf%C3%A9/100%/%zz/%2");
        assert_eq!(normalize("/%+1/%-1"), "/%+1/%-1");
    }

    #[test]
    fn runs_of_slashes_become_one() {
        assert_eq!(normalize("//admin"), "/admin");
        assert_eq!(normalize("/a//b///"), "/a/b/");
    }

    #[test]
    fn paths_in_normal_form_skip_the_work() {
        assert_eq!(normal_form("/a/./b"), Some("/a/b".to_owned()));
        assert_eq!(normal_form("/a/%2Fb"), None, "a path whose form does not change");
        for path in ["/", "/books/3", "/app/main.js", "/v1.2/items"] {
            assert!(!may_need_normalizing(path), "{path}");
        }
        assert!(!may_need_normalizing("*"), "OPTIONS * has no path to normalize");
    }
}
