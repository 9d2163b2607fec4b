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
        // `StorageFull` is what the platform's "no space left" (ENOSPC on
        // Unix) maps to.
        if source.kind() == io::ErrorKind::StorageFull {
            Error::StorageFull { context, source }
        } else {
            Error::Io { context, source }
        }
    }

    /// Whether this error says the store is full: [`Error::StorageFull`],
    /// or an [`Error::Io`] or [`Error::Backend`] caused by a full disk
    /// ([`io::ErrorKind::StorageFull`], ENOSPC) or an exhausted quota
    /// ([`io::ErrorKind::QuotaExceeded`]), wherever in its chain of
    /// causes, including an error of this crate wrapped in an
    /// [`io::Error`] (a backend's reader passing on a store's error, say).
    ///
    /// A caller that sees it knows that retrying at once is futile: the
    /// previous checkpoint is intact, and the work goes on once there is
    /// room.
    ///
    /// ```
    /// use std::io;
    /// use pragma_checkpoint::Error;
    ///
    /// let full = Error::io("writing", io::Error::from(io::ErrorKind::StorageFull));
    /// assert!(full.is_storage_full());
    /// let denied = Error::io("writing", io::Error::from(io::ErrorKind::PermissionDenied));
    /// assert!(!denied.is_storage_full());
    /// ```
    pub fn is_storage_full(&self) -> bool {
        match self {
            Error::StorageFull { .. } => true,
            Error::Io { source, .. } => io_is_full(source),
            Error::Backend { source, .. } => cause_is_full(source.as_ref()),
            _ => false,
        }
    }
}

/// Whether an I/O error is a full disk or quota, or wraps an error that is.
fn io_is_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || error.get_ref().is_some_and(|inner| cause_is_full(inner))
}

/// Whether `error` or any of its causes says the storage is full.
fn cause_is_full(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(store) = error.downcast_ref::<Error>() {
            if store.is_storage_full() {
                return true;
            }
        } else if let Some(io) = error.downcast_ref::<io::Error>()
            && io_is_full(io)
        {
            return true;
        }
        cause = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(source: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::Backend {
            store: "test",
            source: Box::new(source),
        }
    }

    #[test]
    fn a_full_disk_is_a_full_store() {
        let enospc = io::Error::from(io::ErrorKind::StorageFull);
        assert!(Error::io("writing", enospc).is_storage_full());
        #[cfg(target_os = "linux")]
        {
            // The raw OS error (ENOSPC), as a write(2) that failed gives it.
            let raw = io::Error::from_raw_os_error(28);
            let error = Error::io("writing", raw);
            assert!(matches!(error, Error::StorageFull { .. }), "{error:?}");
            assert!(error.is_storage_full());
        }
        let quota = io::Error::from(io::ErrorKind::QuotaExceeded);
        assert!(Error::io("writing", quota).is_storage_full());
    }

    #[test]
    fn a_full_store_is_found_where_it_is_wrapped() {
        // A store's error inside an io::Error (a reader passing it on).
        let inner = Error::io("writing", io::Error::from(io::ErrorKind::StorageFull));
        let wrapped = Error::io("copying", io::Error::other(inner));
        assert!(matches!(wrapped, Error::Io { .. }));
        assert!(wrapped.is_storage_full());
        // An io::Error inside an io::Error, inside a backend's error.
        let nested = io::Error::other(io::Error::from(io::ErrorKind::StorageFull));
        assert!(backend(nested).is_storage_full());
    }

    #[test]
    fn other_errors_are_not_a_full_store() {
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert!(!Error::io("writing", denied).is_storage_full());
        assert!(!backend(io::Error::other("timed out")).is_storage_full());
        let not_found = Error::NotFound { key: "k".into() };
        assert!(!not_found.is_storage_full());
        assert!(!Error::io("copying", io::Error::other(not_found)).is_storage_full());
    }
}
