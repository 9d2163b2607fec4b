//! What the coordinator hears: from the executor and handles (a new
//! operation, a cancel) and from the tasks it spawned (a job done, a state
//! scored, a commit made, an operation concluded).

use pragma_scheduler::{OpId, WorkerId};
use pragma_selector::Evaluation;

use crate::op::{NewOp, Written};
use crate::persist::CommitFailure;
use crate::report::{Best, FinalStatus};
use pragma_contract::JobOutcome;

/// What the coordinator hears.
pub(crate) enum Msg<St> {
    Submit(Box<NewOp<St>>),
    JobDone {
        op: OpId,
        worker: WorkerId,
        output: JobOutcome,
    },
    Evaluated {
        op: OpId,
        worker: WorkerId,
        iterations_done: u64,
        evaluation: Evaluation,
        /// The state that was evaluated, to be committed.
        state: St,
    },
    Committed {
        op: OpId,
        commit: CommitKind,
        result: Result<(u64, u64), CommitFailure>,
    },
    Finalized {
        op: OpId,
        status: FinalStatus,
        best: Option<Best<St>>,
    },
    Cancel(String),
    /// A preemption notice for the named operation, with its grace period.
    Suspend(String, std::time::Duration),
    /// The named operation's grace period is over.
    SuspendNow(String),
    /// Time for a group commit that was held back.
    Flush(OpId),
    /// The backend's capacity is now this (a cluster grew or shrank).
    Capacity(u64),
}

/// What a commit was for.
pub(crate) enum CommitKind {
    /// A repeat's checkpoint, after `iterations_done` iterations.
    Checkpoint {
        worker: WorkerId,
        iterations_done: u64,
        written: Written,
    },
    /// A parallel group commit, recording `workers`' iterations.
    Batch {
        workers: Vec<(WorkerId, u64)>,
        /// The best iteration, if the commit holds its state.
        best_iteration: Option<u64>,
        written: Written,
    },
    /// A repeat's record of its usage between checkpoints.
    Usage,
}
