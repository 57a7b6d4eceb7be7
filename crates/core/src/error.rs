//! The one error type of labelgan.
//!
//! Every crate returns this type so that the traits compose (a factory can call a
//! user's `Generator` and our `PixelLabeler` with one `?`). Each variant names the
//! thing that is wrong: the file, the tensor key, the shapes.

use std::path::PathBuf;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in labelgan, each naming its cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (candle's own error, without the backtrace candle
    /// attaches when `RUST_BACKTRACE` is set: errors stay one line).
    #[error(transparent)]
    Candle(candle_core::Error),

    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },

    /// A file exists but its contents cannot be understood.
    #[error("{}: {msg}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },

    /// A weight file lacks a tensor the model needs.
    #[error("{}: missing tensor `{key}`{}", file.display(), expected_shape(expected))]
    MissingKey {
        /// The weight file.
        file: PathBuf,
        /// The state-dict key.
        key: String,
        /// The shape the model expected, when known.
        expected: Option<Vec<usize>>,
    },

    /// A tensor has the wrong shape.
    #[error("{}: tensor `{key}` has shape {found:?}, expected {expected:?}", file.display())]
    ShapeMismatch {
        /// The weight file (or a description of the source, e.g. `argument`).
        file: PathBuf,
        /// The tensor's name.
        key: String,
        /// The shape the model expected.
        expected: Vec<usize>,
        /// The shape that was found.
        found: Vec<usize>,
    },

    /// An argument or input tensor is invalid (wrong shape, NaN, out of range, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A command-line argument is wrong or conflicts with another (found after
    /// parsing, before any work): the command exits 2, as for a parse error.
    #[error("invalid argument: {0}")]
    Usage(String),

    /// The run stopped on request (SIGINT or SIGTERM) after finishing what it was
    /// writing; rerunning the same command resumes it. The command exits 130.
    #[error("stopped: {0}")]
    Stopped(String),

    /// Any other error, from a crate outside labelgan or a user's implementation.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

fn expected_shape(s: &Option<Vec<usize>>) -> String {
    match s {
        Some(s) => format!(" (expected shape {s:?})"),
        None => String::new(),
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Candle(without_backtrace(e))
    }
}

/// `e` with every backtrace layer removed.
fn without_backtrace(e: candle_core::Error) -> candle_core::Error {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => without_backtrace(*inner),
        other => other,
    }
}

impl Error {
    /// An error of a candle-nn `VarBuilder` over the weights of `file`, as the
    /// named error it stands for: a missing tensor is [`Error::MissingKey`], one of
    /// another shape [`Error::ShapeMismatch`], anything else [`Error::Format`].
    pub fn in_weights(file: impl Into<PathBuf>, e: candle_core::Error) -> Self {
        let file = file.into();
        match without_backtrace(e) {
            candle_core::Error::CannotFindTensor { path } => Error::MissingKey {
                file,
                key: path,
                expected: None,
            },
            candle_core::Error::UnexpectedShape { msg, expected, got } => Error::ShapeMismatch {
                file,
                key: msg.strip_prefix("shape mismatch for ").unwrap_or(&msg).to_string(),
                expected: expected.dims().to_vec(),
                found: got.dims().to_vec(),
            },
            other => Error::Format {
                path: file,
                msg: other.to_string(),
            },
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Format`] for `path`.
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// An [`Error::Usage`].
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    /// The same error as an [`Error::Usage`] when it is an [`Error::InvalidInput`]:
    /// for settings validated before the work starts, which are the user's arguments.
    pub fn into_usage(self) -> Self {
        match self {
            Error::InvalidInput(m) => Error::Usage(m),
            other => other,
        }
    }

    /// An [`Error::InvalidInput`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }
}
