//! Which iteration runs next, where, and when to checkpoint: the scheduling
//! of background operations as a pure state machine.
//!
//! Many operations share one pool of worker slots. Each has a [`Plan`]
//! (`repeat`: sequential with periodic checkpoints; `parallel`: independent
//! iterations on up to P workers; `async`: one run) and [`Budgets`] (code
//! retries and preemptions per iteration, kept apart, and a cap on starts).
//! The executor reports what happened as [`Event`]s; [`Scheduler::handle`]
//! answers with [`Action`]s to carry out. There is no I/O, no clock and no
//! thread here, so every schedule is reproducible and testable: the same
//! events always give the same actions, and the whole state is
//! serde-serialisable, so a snapshot restored later continues exactly.
//!
//! # Rules
//!
//! - **Admission** is first come, first served, and none starves: free
//!   slots go to the oldest operation that can use one. An operation that cannot start is
//!   queued, with the reason in its [`Phase`] (`capacity 0`, `waiting for
//!   3 of 5 workers`). A parallel operation starts with the workers there
//!   are and grows up to P as slots come back; a finishing worker stays with
//!   its operation unless an older one is waiting. An operation that has
//!   made 64 starts and keeps several workers hands a finishing one to the
//!   oldest operation that holds none: a large operation never holds back
//!   those behind it for more than one of its iterations.
//! - **repeat** runs iterations in order on one worker and asks for a
//!   [`Action::Checkpoint`] after every K-th iteration and after the last;
//!   the next iteration starts only once the checkpoint is committed. A
//!   failure rewinds to the last checkpoint and retries (the failing
//!   iteration's budget); a lost worker suspends the operation until a slot
//!   is free, then it resumes from the last checkpoint. Work lost is at most
//!   K-1 finished iterations plus the running one.
//! - **parallel** keeps at most P iterations in flight; a failed iteration is
//!   queued again until its retries are used up ([`Action::IterationAbandoned`]);
//!   a lost worker's iteration is queued again (its preemption budget) and
//!   the operation goes on with fewer workers. Finished iterations never run
//!   again. It succeeds if at least one iteration succeeded.
//! - **Cancel** stops every worker of the operation at once; nothing more starts.
//! - Reports from a worker the operation no longer holds (a preempted
//!   machine that wakes up late) are ignored: worker ids are never reused.
//!
//! # Example: driving a repeat plan by hand
//!
//! ```
//! use pragma_scheduler::{Action, Budgets, Event, Conclusion, Plan, Scheduler, StartFrom, Phase};
//!
//! let mut scheduler = Scheduler::new(1); // one worker slot
//! let plan = Plan::Repeat { iterations: 3, checkpoint_period: 2 };
//! let (op, actions) = scheduler.submit(plan, Budgets::default())?;
//! let Action::Start { worker, iteration: 0, from: StartFrom::Submission, .. } = actions[0] else {
//!     panic!("iteration 0 starts first: {actions:?}")
//! };
//!
//! // Iteration 0 finishes: iteration 1 runs on the state it left.
//! let actions = scheduler.handle(Event::IterationFinished(worker));
//! assert!(matches!(actions[..], [Action::Start { iteration: 1, from: StartFrom::Previous, .. }]));
//!
//! // After 2 iterations (the period), a checkpoint before going on.
//! let actions = scheduler.handle(Event::IterationFinished(worker));
//! assert!(matches!(actions[..], [Action::Checkpoint { iterations_done: 2, .. }]));
//!
//! // The worker is preempted while the checkpoint is written: the operation
//! // is suspended (no free slot), then resumes from the start when a slot
//! // comes back, since no checkpoint was committed.
//! scheduler.handle(Event::SetCapacity(0));
//! scheduler.handle(Event::WorkerLost(worker));
//! assert!(matches!(scheduler.status(op), Some(Phase::Suspended { .. })));
//! let actions = scheduler.handle(Event::SetCapacity(1));
//! let Action::Start { worker, iteration: 0, from: StartFrom::Submission, .. } = actions[0] else {
//!     panic!("{actions:?}")
//! };
//! assert_eq!(scheduler.status(op).unwrap().progress().lost, 2);
//!
//! // Run it through: 0, 1, checkpoint, 2, checkpoint, done.
//! scheduler.handle(Event::IterationFinished(worker));
//! scheduler.handle(Event::IterationFinished(worker));
//! scheduler.handle(Event::CheckpointCommitted(worker));
//! let actions = scheduler.handle(Event::IterationFinished(worker));
//! assert!(matches!(actions[..], [Action::Checkpoint { iterations_done: 3, .. }]));
//! let actions = scheduler.handle(Event::CheckpointCommitted(worker));
//! assert!(actions.contains(&Action::Finished { op, outcome: Conclusion::Succeeded }));
//! # Ok::<(), pragma_scheduler::InvalidPlan>(())
//! ```

#![deny(missing_docs)]

mod event;
mod plan;
mod scheduler;
mod status;

pub use event::{Action, Event, OpId, StartFrom, WorkerId};
pub use plan::{Budgets, InvalidPlan, Plan};
pub use scheduler::{Resume, Scheduler};
pub use status::{Conclusion, FailReason, Phase, Progress, WaitReason};
