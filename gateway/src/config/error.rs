//! Config errors that say where the problem is: file, line, column and field.

use marked_yaml::Span;
use std::fmt;
use std::sync::Arc;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: Arc<str>,
    /// 1-based; 0 when the problem has no single place (e.g. a missing section).
    pub line: usize,
    pub column: usize,
    /// The field's path, e.g. `routes[2].upstream`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.field, self.message
        )
    }
}

/// Every problem found in one config file; validation collects them all before failing.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        writeln!(
            f,
            "invalid config ({count} problem{})",
            if count == 1 { "" } else { "s" }
        )?;
        for error in &self.0 {
            writeln!(f, "  {error}")?;
        }
        Ok(())
    }
}

/// Collects errors for one file while validation walks it.
pub(crate) struct Problems {
    file: Arc<str>,
    errors: Vec<ConfigError>,
    /// Where relative file names in the config are found from.
    pub(crate) folder: std::path::PathBuf,
}

impl Problems {
    pub(crate) fn new(file: Arc<str>) -> Self {
        Problems {
            file,
            errors: Vec::new(),
            folder: std::path::PathBuf::from("."),
        }
    }

    /// Reads a file the config names (relative to the config's folder); a failure is a problem
    /// at the name's line.
    pub(crate) fn read_file(&mut self, field: &str, name: &super::raw::Text) -> Option<Vec<u8>> {
        let path = self.folder.join(name.trim());
        std::fs::read(&path)
            .map_err(|error| {
                let message = format!("cannot read `{}`: {error}", path.display());
                self.at(name.span(), field, message)
            })
            .ok()
    }

    /// Records a problem at `span` (the value's place in the file).
    pub(crate) fn at(&mut self, span: &Span, field: impl Into<String>, message: impl Into<String>) {
        let (line, column) = span.start().map_or((0, 0), |mark| (mark.line(), mark.column()));
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        });
    }

    /// Records a problem with no single place in the file.
    pub(crate) fn nowhere(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.at(&Span::new_blank(), field, message);
    }

    pub(crate) fn into_errors(self) -> ConfigErrors {
        ConfigErrors(self.errors)
    }

    pub(crate) fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}
