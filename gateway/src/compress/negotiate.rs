//! Which coding a client takes, from its `Accept-Encoding` (RFC 9110 §12.5.3): each coding with
//! its quality (`q`, 1 when left out; 0 refuses it), `*` standing for the codings not named,
//! names compared without regard to case. Written here: the crates that parse this header
//! compare names by case, refuse `q` with spaces around it, or are no longer kept.

use http::header::{HeaderMap, ACCEPT_ENCODING};

/// The codings the gateway compresses with, in its order of preference on equal quality: zstd
/// compresses about as small as brotli at a fraction of its CPU, then brotli, then gzip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Zstd,
    Brotli,
    Gzip,
}

impl Coding {
    pub(crate) const ALL: [Coding; 3] = [Coding::Zstd, Coding::Brotli, Coding::Gzip];

    /// Its name in `Content-Encoding`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Coding::Zstd => "zstd",
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
        }
    }

    fn is_named(self, name: &str) -> bool {
        match self {
            Coding::Zstd => name.eq_ignore_ascii_case("zstd"),
            Coding::Brotli => name.eq_ignore_ascii_case("br"),
            // RFC 9110 §8.4.1.3: `x-gzip` is the same coding.
            Coding::Gzip => name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip"),
        }
    }
}

/// The coding of the highest quality the client takes; `None` when it takes neither (no
/// `Accept-Encoding` asks for the body as it is).
pub(crate) fn preferred(headers: &HeaderMap) -> Option<Coding> {
    let qualities = qualities(headers);
    let mut best: Option<(Coding, u16)> = None;
    for (coding, quality) in Coding::ALL.into_iter().zip(qualities) {
        if quality > 0 && best.is_none_or(|(_, q)| quality > q) {
            best = Some((coding, quality));
        }
    }
    best.map(|(coding, _)| coding)
}

/// The quality the client gives each coding of [`Coding::ALL`], in thousandths: as named (the
/// first time), else as `*`, else 0. One pass over the header.
fn qualities(headers: &HeaderMap) -> [u16; Coding::ALL.len()] {
    let mut named = [None; Coding::ALL.len()];
    let mut wildcard = 0;
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for member in value.split(',') {
            let mut parts = member.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let quality = parts.find_map(q_value).unwrap_or(1000);
            if name == "*" {
                wildcard = quality;
            } else if let Some(i) = Coding::ALL.iter().position(|c| c.is_named(name)) {
                named[i] = named[i].or(Some(quality));
            }
        }
    }
    named.map(|quality| quality.unwrap_or(wildcard))
}

/// `q=0.8` as 800; `None` for another parameter or a malformed value (which is then ignored).
fn q_value(parameter: &str) -> Option<u16> {
    let (key, value) = parameter.split_once('=')?;
    if !key.trim().eq_ignore_ascii_case("q") {
        return None;
    }
    let value: f32 = value.trim().parse().ok()?;
    (0.0..=1.0)
        .contains(&value)
        .then(|| (value * 1000.0).round() as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn taken(accept_encoding: &'static str) -> Option<Coding> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static(accept_encoding));
        preferred(&headers)
    }

    #[test]
    fn the_client_s_highest_quality_coding_wins_and_zstd_then_brotli_break_ties() {
        assert_eq!(taken("gzip, deflate, br"), Some(Coding::Brotli));
        assert_eq!(taken("gzip, deflate, br, zstd"), Some(Coding::Zstd));
        assert_eq!(taken("zstd;q=0.9, br"), Some(Coding::Brotli));
        assert_eq!(taken("gzip, deflate"), Some(Coding::Gzip));
        assert_eq!(taken("br;q=0.5, gzip;q=0.9"), Some(Coding::Gzip));
        assert_eq!(taken("GZIP ; Q = 0.7 , Br;q=0.6"), Some(Coding::Gzip));
        assert_eq!(taken("x-gzip"), Some(Coding::Gzip));
        assert_eq!(taken("*"), Some(Coding::Zstd));
        assert_eq!(taken("zstd;q=0, br;q=0, *;q=0.3"), Some(Coding::Gzip));
        assert_eq!(preferred(&HeaderMap::new()), None, "no header: the body as it is");
    }

    /// The counters by coding are indexed by `coding as usize`.
    #[test]
    fn codings_are_listed_in_their_index_order() {
        for (index, coding) in Coding::ALL.into_iter().enumerate() {
            assert_eq!(coding as usize, index, "{coding:?}");
        }
    }

    #[test]
    fn refused_unknown_or_malformed_codings_are_not_taken() {
        for refused in ["identity", "deflate, compress", "gzip;q=0, br;q=0", "*;q=0", ""] {
            assert_eq!(taken(refused), None, "{refused}");
        }
        // A quality out of range is ignored, so the coding keeps its default of 1.
        assert_eq!(taken("gzip;q=2, br;q=0"), Some(Coding::Gzip));
    }
}
