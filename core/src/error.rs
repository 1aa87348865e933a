//! The engine's error type. Every variant has a stable `code()` that the server puts on the
//! wire, so clients can branch on it; messages are for people and may change.

use std::fmt;

/// Where in the scripts folder a problem is: file, line and column (1-based, 0 if unknown).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One problem found while loading scripts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ScriptProblem {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for ScriptProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("scripts failed to load:\n{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Load(Vec<ScriptProblem>),
    #[error("{0}")]
    Validation(String),
    /// A form with problems, each about one field: all of them at once.
    #[error("{}", .0.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<crate::form::Problem>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidTransition(String),
    /// A hook, automatic step or routing condition failed at run time; nothing was changed.
    #[error("script error in {procedure}: {message}")]
    Script { procedure: String, message: String },
    #[error("store: {0}")]
    Store(String),
    /// Another process holds the data folder (sled allows one per folder).
    #[error("the data folder {0} is in use by another Guichet process")]
    InUse(String),
    /// The store is closed for a moment (a checkpoint could not reopen it yet); nothing
    /// was changed, and the same request may be sent again.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    /// The stable, machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Load(_) => "script_load_failed",
            Error::Validation(_) | Error::Invalid(_) => "validation_failed",
            Error::NotFound(_) => "not_found",
            Error::Forbidden(_) => "forbidden",
            Error::Conflict(_) => "conflict",
            Error::InvalidTransition(_) => "invalid_transition",
            Error::Script { .. } => "script_error",
            Error::Store(_) => "store_error",
            Error::InUse(_) => "store_in_use",
            Error::Unavailable(_) => "unavailable",
        }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Store(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Store(format!("corrupt record: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
