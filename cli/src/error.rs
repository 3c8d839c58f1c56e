//! The CLI's error: one human-readable message, printed as `microformer: error: …`.

use std::fmt;

/// A failure of the host tool, with the message shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(pub String);

impl CliError {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        CliError(msg.into())
    }

    /// Prefixes the message with some context (`context: message`).
    pub fn context(self, ctx: impl fmt::Display) -> Self {
        CliError(format!("{ctx}: {}", self.0))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

impl From<microformer::Error> for CliError {
    fn from(e: microformer::Error) -> Self {
        CliError(e.to_string())
    }
}

/// Result with a [`CliError`].
pub type Result<T> = std::result::Result<T, CliError>;

/// Shorthand: `Err(CliError::new(format!(...)))`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::CliError::new(format!($($arg)*)))
    };
}
pub(crate) use bail;
