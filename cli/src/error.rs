//! The CLI's error: one human-readable message, printed as `microformer: error: …`,
//! and the exit status it calls for.
//!
//! Exit statuses: 2 for usage and configuration errors (bad flags or option
//! values, a bad `config.json`, a request the model cannot serve such as a token
//! outside its vocabulary or a prompt longer than its context — clap uses 2 for
//! its own usage errors too), 1 for failures while doing the work (unreadable or
//! malformed input files, I/O errors).

use std::fmt;

/// Which exit status an error calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Usage or configuration error: exit status 2.
    Usage,
    /// Runtime failure (files, I/O, malformed inputs): exit status 1.
    Runtime,
}

/// A failure of the host tool, with the message shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(pub String, pub Kind);

impl CliError {
    /// A usage/configuration error (exit status 2) with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        CliError(msg.into(), Kind::Usage)
    }

    /// A runtime failure (exit status 1) with this message.
    pub fn runtime(msg: impl Into<String>) -> Self {
        CliError(msg.into(), Kind::Runtime)
    }

    /// Prefixes the message with some context (`context: message`).
    pub fn context(self, ctx: impl fmt::Display) -> Self {
        CliError(format!("{ctx}: {}", self.0), self.1)
    }

    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self.1 {
            Kind::Usage => 2,
            Kind::Runtime => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

impl From<microformer::Error> for CliError {
    /// Library errors from configuration checks (RoPE parameters, ...) are usage
    /// errors; callers turn file and run-time ones into [`Kind::Runtime`].
    fn from(e: microformer::Error) -> Self {
        CliError(e.to_string(), Kind::Usage)
    }
}

impl From<microformer_convert::Error> for CliError {
    /// A converter's configuration errors are usage errors, its input errors
    /// runtime failures.
    fn from(e: microformer_convert::Error) -> Self {
        let kind = match e.kind() {
            microformer_convert::ErrorKind::Config => Kind::Usage,
            microformer_convert::ErrorKind::Input => Kind::Runtime,
        };
        CliError(e.message().to_string(), kind)
    }
}

/// Result with a [`CliError`].
pub type Result<T> = std::result::Result<T, CliError>;

/// Shorthand: `Err(CliError::new(format!(...)))` (a usage error, exit status 2).
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::CliError::new(format!($($arg)*)))
    };
}
pub(crate) use bail;

/// Shorthand: `Err(CliError::runtime(format!(...)))` (exit status 1).
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::error::CliError::runtime(format!($($arg)*)))
    };
}
pub(crate) use fail;
