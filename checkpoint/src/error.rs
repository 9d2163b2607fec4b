//! The crate's one error type; every backend maps its failures into it.

use std::io;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No object at this key.
    #[error("not found: `{key}`")]
    NotFound {
        /// The key.
        key: String,
    },
    /// An exclusive create found the key taken.
    #[error("already exists: `{key}`")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// A name or key a caller supplied could reach outside the store, or is
    /// otherwise unusable.
    #[error("invalid name `{name}`: {reason}")]
    InvalidName {
        /// The name, as given (cut short when long).
        name: String,
        /// What is wrong with it and what is allowed.
        reason: &'static str,
    },
    /// The writer's epoch was superseded: the operation was resumed by
    /// another writer, so this one may not commit any more.
    #[error(
        "operation `{op}`: this writer holds epoch {epoch}, but epoch {newer} has been claimed since \
         (the operation was resumed elsewhere); its commit was rejected and changed nothing"
    )]
    Fenced {
        /// The operation.
        op: String,
        /// The writer's epoch.
        epoch: u64,
        /// The newer epoch.
        newer: u64,
    },
    /// Another writer committed the same generation first.
    #[error("operation `{op}`: generation {generation} was committed by another writer first")]
    Conflict {
        /// The operation.
        op: String,
        /// The contested generation.
        generation: u64,
    },
    /// A checkpoint failed verification.
    #[error("checkpoint {generation} of operation `{op}` is damaged: {reason}")]
    Damaged {
        /// The operation.
        op: String,
        /// The checkpoint's generation.
        generation: u64,
        /// What failed.
        reason: String,
    },
    /// The storage has no room left. Nothing was committed; the previous
    /// checkpoint is intact.
    #[error(
        "no space left while {context}; free some space or use another store (the previous checkpoint is intact)"
    )]
    StorageFull {
        /// What was being written.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A backend's own error.
    #[error("{store}: {source}")]
    Backend {
        /// Which backend.
        store: &'static str,
        /// Its error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// An I/O error with what was being done; a full disk becomes
    /// [`Error::StorageFull`].
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        let context = context.into();
        if source.kind() == io::ErrorKind::StorageFull || source.raw_os_error() == Some(28) {
            Error::StorageFull { context, source }
        } else {
            Error::Io { context, source }
        }
    }
}
