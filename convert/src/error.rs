//! The converters' error: one message naming the defect, and its [`ErrorKind`].
//!
//! Every failure is an `Err` — a bad or truncated checkpoint, a malformed
//! safetensors file, a tensor of the wrong shape or dtype, a bad `config.json`,
//! absurd dimensions — never a panic. The kind says whose fault it is: the
//! request's ([`ErrorKind::Config`]: a bad `config.json` or option, which
//! `microformer` reports with exit status 2) or the input files'
//! ([`ErrorKind::Input`]: unreadable, malformed or inconsistent files, exit
//! status 1).

use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad `config.json` or conversion option: the request cannot be served as
    /// given.
    Config,
    /// An unreadable, malformed or inconsistent input file (a checkpoint, a
    /// safetensors file or its index, a tokenizer), or an internal failure while
    /// writing the image.
    Input,
}

/// A conversion failure, with the message shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// A configuration error ([`ErrorKind::Config`]) with this message.
    pub fn config(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Config,
            message: message.into(),
        }
    }

    /// An input error ([`ErrorKind::Input`]) with this message.
    pub fn input(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Input,
            message: message.into(),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message (also its `Display`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with some context (`context: message`).
    pub fn context(self, ctx: impl fmt::Display) -> Self {
        Error {
            kind: self.kind,
            message: format!("{ctx}: {}", self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<microformer::Error> for Error {
    /// Library errors from configuration checks (RoPE parameters, image header
    /// limits, ...) are configuration errors; callers turn file ones into
    /// [`ErrorKind::Input`].
    fn from(e: microformer::Error) -> Self {
        Error::config(e.to_string())
    }
}

/// Result with an [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand: `return Err(Error::config(format!(...)))`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::config(format!($($arg)*)))
    };
}
pub(crate) use bail;

/// Shorthand: `return Err(Error::input(format!(...)))`.
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::input(format!($($arg)*)))
    };
}
pub(crate) use fail;
