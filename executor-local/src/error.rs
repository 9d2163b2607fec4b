//! What can go wrong when submitting, resuming or waiting for an operation.

use std::io;

/// Why the executor could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The cell's directive is invalid.
    #[error("invalid directive: {0}")]
    Directive(#[from] pragma_parse::ParseError),
    /// Some variables of the state cannot be saved, so the operation cannot
    /// run in the background.
    #[error(
        "cannot run in the background: these variables cannot be saved: {}; remove them or recreate them in the cell",
        .0.join(", ")
    )]
    Unsaveable(Vec<String>),
    /// The checkpoint store failed.
    #[error("checkpoint store: {0}")]
    Store(#[from] pragma_checkpoint::Error),
    /// The host could not snapshot or restore a state.
    #[error("saving or restoring the state: {0}")]
    State(io::Error),
    /// No such operation in the store.
    #[error("operation `{op}`: there is no such operation in the store")]
    UnknownOperation {
        /// The operation.
        op: String,
    },
    /// The operation's records in the store cannot be read (damaged, cut
    /// short, part of them deleted), so it cannot be resumed or reported.
    #[error("operation `{op}`: {problem}")]
    Damaged {
        /// The operation.
        op: String,
        /// What is wrong with its records.
        problem: String,
    },
    /// The operation cannot be extended: only one that succeeded can
    /// ([`Executor::extend`](crate::Executor::extend)).
    #[error("operation `{op}` cannot be extended: {why}")]
    NotExtendable {
        /// The operation.
        op: String,
        /// Why, and what to do instead.
        why: String,
    },
    /// The executor stopped (dropped, crashed) before the operation ended.
    #[error(
        "the executor stopped before the operation ended; resume it with a new executor on the same store"
    )]
    Stopped,
}
