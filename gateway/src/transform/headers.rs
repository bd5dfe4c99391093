//! Header edits: remove, then set (replacing), then add (appending).

use super::template::{Template, Vars};
use http::header::{HeaderMap, HeaderName};

#[derive(Debug, Default)]
pub(crate) struct HeaderEdits {
    pub(crate) remove: Vec<HeaderName>,
    pub(crate) set: Vec<(HeaderName, Template)>,
    pub(crate) add: Vec<(HeaderName, Template)>,
}

impl HeaderEdits {
    pub(crate) fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    pub(crate) fn apply(&self, headers: &mut HeaderMap, vars: &Vars<'_>) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, template) in &self.set {
            if let Some(value) = template.render(vars) {
                headers.insert(name.clone(), value);
            }
        }
        for (name, template) in &self.add {
            if let Some(value) = template.render(vars) {
                headers.append(name.clone(), value);
            }
        }
    }
}
