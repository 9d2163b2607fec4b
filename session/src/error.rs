//! What can go wrong in the lifecycle.

use std::io;

use pragma_executor_local::{ExecError, FinalStatus};

/// An error of the lifecycle: each says what failed and on what; the
/// host adds how its user goes on (the commands to type).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The same cell on the same state runs already, in another process.
    /// Its user waits for it (or cancels it); if its runner is gone for
    /// good but looks alive (an executor in a process that lives on after
    /// it crashed, a machine that will not come back),
    /// [`Session::forget_runner`](crate::Session::forget_runner) lets it go
    /// and the next start resumes the operation here.
    #[error(
        "operation {op} of this cell and state is already running ({runner}); if that runner \
         is gone for good, `Session::forget_runner` lets the next start take the operation up"
    )]
    AlreadyRunning {
        /// The operation.
        op: String,
        /// What runs it (`process 42 on node7`, `SLURM job 17`).
        runner: String,
        /// Whether its runner can be stopped from here: it runs on this
        /// machine, or is a batch job.
        reachable: bool,
    },
    /// The live state could not be read or captured.
    #[error("cannot read the state `{state}`: {source}")]
    LiveState {
        /// The state's identity.
        state: String,
        /// What failed.
        source: io::Error,
    },
    /// The result could not be applied to the live state; nothing of it
    /// was.
    #[error("cannot apply the result to `{state}`: {source}")]
    Apply {
        /// The state's identity.
        state: String,
        /// What failed.
        source: io::Error,
    },
    /// The executor failed: an invalid directive, unsaveable variables,
    /// the store.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The records have no such operation.
    #[error("no operation `{op}` is on record here")]
    Unknown {
        /// The operation.
        op: String,
    },
    /// The operation has not ended, so it has no result yet.
    #[error("operation {op} {}", if *.running { "is still running" } else { "has not ended, so it has no result yet" })]
    NotEnded {
        /// The operation.
        op: String,
        /// Whether a runner runs it now (otherwise it waits to be resumed).
        running: bool,
    },
    /// The operation ended without a result to apply.
    #[error("operation {op} ended {}: there is no result to apply", .status.name())]
    NoResult {
        /// The operation.
        op: String,
        /// How it ended.
        status: FinalStatus,
    },
    /// The operation has ended: there is nothing to resume.
    #[error("operation {op} has ended ({}): there is nothing to resume", .status.name())]
    Ended {
        /// The operation.
        op: String,
        /// How it ended.
        status: FinalStatus,
    },
    /// A record could not be read or written.
    #[error("the records of operation {op}: {source}")]
    Records {
        /// The operation (or the cell's key, before there is one).
        op: String,
        /// What failed.
        source: io::Error,
    },
}
