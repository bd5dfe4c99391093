//! The digests of the API keys the tests' consumers call with, as a config lists them.

/// `lookout hash-key acme-key`: `acme`'s key is `acme-key`.
pub const ACME_DIGEST: &str = "sha256:afacab3575137afa4e00d9cbcafcb14c9ae25f779d964eb0ea5b2c4eb5dfd163";
/// `lookout hash-key globex-key`: `globex`'s key is `globex-key`.
pub const GLOBEX_DIGEST: &str = "sha256:f2a455b59b858a04c51108416af2042203cb6ac35fa4141fba4148bc856e78d4";
