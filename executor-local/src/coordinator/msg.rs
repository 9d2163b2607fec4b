//! What the coordinator hears: from the executor and handles (a new
//! operation, a cancel) and from the tasks it spawned (a job done, a state
//! scored, a commit made, an operation concluded).

use std::sync::Arc;

use pragma_checkpoint::Lease;
use pragma_parse::Directive;
use pragma_scheduler::{OpId, Resume, WorkerId};
use pragma_selector::Evaluation;
use tokio::sync::{mpsc, oneshot, watch};

use crate::backend::JobOutcome;
use crate::op::Written;
use crate::persist::CommitFailure;
use crate::record::Record;
use crate::report::{Best, Event, FinalStatus, Outcome, Status};

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
    /// Time for a group commit that was held back.
    Flush(OpId),
}

/// What a commit was for.
pub(crate) enum CommitKind {
    /// A repeat's checkpoint, after `iterations_done` iterations.
    Checkpoint {
        worker: WorkerId,
        iterations_done: u64,
    },
    /// A parallel group commit, recording `workers`' iterations.
    Batch {
        workers: Vec<(WorkerId, u64)>,
        /// The best iteration, if the commit holds its state.
        best_iteration: Option<u64>,
        written: Written,
    },
}

/// An operation ready to be handed to the coordinator.
pub(crate) struct NewOp<St> {
    pub(crate) name: String,
    pub(crate) directive: Directive,
    pub(crate) body: Arc<str>,
    pub(crate) lease: Lease,
    pub(crate) submission: Arc<St>,
    pub(crate) submission_generation: u64,
    /// Where the schedule resumes from, if it does.
    pub(crate) progress: Option<Resume>,
    /// The record to take up, if the operation is resumed.
    pub(crate) record: Option<Record>,
    pub(crate) last_generation: u64,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    pub(crate) status: watch::Sender<Status>,
    pub(crate) done: oneshot::Sender<Outcome<St>>,
}
