//! What goes into the scheduler (events) and what comes out (actions).

use std::fmt;

use serde::{Deserialize, Serialize};

/// An operation, numbered by the scheduler in order of submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId(pub u64);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op{}", self.0)
    }
}

/// A worker slot lent to one operation, numbered by the scheduler. Never
/// reused, so an event about a worker the operation no longer holds (a
/// late report from a preempted machine) is recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkerId(pub u64);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w{}", self.0)
    }
}

/// Something that happened, reported by the executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The pool now has this many worker slots. A shrink does not stop
    /// running iterations; report the workers that were taken away with
    /// [`Event::WorkerLost`] (after the shrink, so their slots are not
    /// handed out again).
    SetCapacity(u64),
    /// The iteration on this worker finished successfully.
    IterationFinished(WorkerId),
    /// The iteration on this worker failed (error, non-zero exit).
    IterationFailed(WorkerId),
    /// The checkpoint this worker was asked for is durable.
    CheckpointCommitted(WorkerId),
    /// The checkpoint this worker was asked for could not be written; the
    /// iterations since the last checkpoint run again, as after a failure.
    CheckpointFailed(WorkerId),
    /// The worker was taken away (preemption, a crash); what it was doing is lost.
    WorkerLost(WorkerId),
    /// The user cancels the operation.
    Cancel(OpId),
    /// A stop rule was met (`--patience`, `--target`): no iteration starts
    /// any more, those running are stopped, and the operation ends with
    /// what it has: succeeded if a repeat committed a checkpoint or a
    /// parallel iteration finished, else cancelled. A repeat's checkpoint
    /// on its way is awaited first (tell this before its
    /// `CheckpointCommitted`, so that no iteration starts after it).
    StopEarly(OpId),
    /// A preemption notice: the machine is going. No iteration starts any
    /// more; those running may finish; a repeat then checkpoints its last
    /// finished iteration (whatever its period), and the operation ends
    /// [`Conclusion::Suspended`](crate::Conclusion), resumable with nothing
    /// run since lost.
    Suspend(OpId),
    /// The notice's grace period is over: the iterations still running are
    /// stopped (their work is lost) and a suspending operation ends at
    /// once; a repeat's checkpoint on its way is awaited.
    SuspendNow(OpId),
}

/// Where an iteration's state comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// The state at submission.
    Submission,
    /// The state of the last checkpoint, taken after this many iterations
    /// (repeat, after a rewind or on a new worker).
    Checkpoint {
        /// Iterations the checkpoint covers.
        iterations_done: u64,
    },
    /// The state this worker left after the previous iteration (repeat).
    Previous,
}

/// What the executor must do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Run one iteration on a worker. `attempt` counts from 1 for this
    /// iteration number (retries and re-runs after preemption included).
    Start {
        /// The operation.
        op: OpId,
        /// The worker to run on (new, or one the operation already holds).
        worker: WorkerId,
        /// The iteration number.
        iteration: u64,
        /// Which start of this iteration this is, from 1.
        attempt: u32,
        /// Where its state comes from.
        from: StartFrom,
    },
    /// Evaluate and save the worker's current state durably (repeat), then
    /// report [`Event::CheckpointCommitted`] or [`Event::CheckpointFailed`].
    Checkpoint {
        /// The operation.
        op: OpId,
        /// The worker that holds the state.
        worker: WorkerId,
        /// Iterations the checkpoint covers.
        iterations_done: u64,
    },
    /// Stop what runs on the worker (the operation was cancelled).
    Stop {
        /// The operation.
        op: OpId,
        /// The worker.
        worker: WorkerId,
    },
    /// The operation gives the worker back; drop what it holds for it.
    Release {
        /// The operation.
        op: OpId,
        /// The worker.
        worker: WorkerId,
    },
    /// An iteration used up its budget and will not run again.
    IterationAbandoned {
        /// The operation.
        op: OpId,
        /// The iteration number.
        iteration: u64,
    },
    /// The operation reached a final state (see [`crate::Conclusion`]).
    Finished {
        /// The operation.
        op: OpId,
        /// How it ended.
        outcome: crate::Conclusion,
    },
}
