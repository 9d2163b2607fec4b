//! The thin, embeddable executor of background operations.
//!
//! A tool that accepts cells such as
//!
//! ```text
//! #pragma parallel --iterations 20 --parallel-runs 5 --max-by "accuracy"
//! train(lr=0.01 * iteration)
//! ```
//!
//! embeds an [`Executor`] and provides a [`Host`]: the code that runs a body
//! on a state, scores a state, and snapshots and restores states. The
//! executor owns no policy of its own: the directive is parsed by
//! `pragma-parse`, the schedule (which iteration runs next, retries,
//! preemptions, the pool) is `pragma-scheduler`'s, the winner is
//! `pragma-selector`'s, and durability is `pragma-checkpoint`'s. It ties them
//! together on tokio:
//!
//! - [`Executor::submit`] returns at once with a [`Handle`]: events
//!   ([`Event`], serialisable), a [`Status`] at any time, [`Handle::cancel`],
//!   and [`Handle::wait`] for the [`Outcome`]: the best state, its iteration
//!   and score, every candidate, failed iterations, [`Usage`].
//! - **repeat** checkpoints after every K-th iteration (state, score, and
//!   progress, durably). **parallel** records finished iterations durably in
//!   group commits that run back to back beside the iterations (one commit
//!   holds every iteration that finished while the previous one was being
//!   written); a recorded iteration never runs again, and a crash loses at
//!   most the iterations finished since the last group commit, as a repeat
//!   loses those since its last checkpoint. The operation ends only once
//!   everything is recorded.
//! - A new executor on the same store lists [`Executor::unfinished`]
//!   operations and [`Executor::resume`]s them from their last checkpoint.
//! - The iteration variable is set for each run and removed from the final
//!   state; parallel iterations each start from their own copy of the state
//!   at submission.
//! - A body that asks for interactive input ends the operation as
//!   interrupted, naming the iteration; nothing is applied.
//! - [`conflict::compare`] settles the result against a live state that
//!   changed meanwhile.
//! - Iterations run on an [`ExecutionBackend`]: [`TokioBackend`] (tasks in
//!   this process) by default; another crate can run them elsewhere.
//! - A host over a serde state writes only `run` and `evaluate`: a
//!   [`SerdeHost`] in a [`JsonHost`] saves states as JSON.
//! - With the `test-util` feature, `testkit` has a scripted host, a fault
//!   wrapper around any backend, and `run_cell` for tests.
//! - With the `conformance` feature, `conformance` checks a [`Host`] or an
//!   [`ExecutionBackend`] of yours against its contract; every in-tree host
//!   and backend runs it.
//!
//! # One dependency
//!
//! An embedding depends on this crate and tokio, nothing else: the
//! contract ([`Host`], [`ExecutionBackend`], from `pragma-contract`), the
//! stores ([`MemoryStore`], [`LocalStore`]), [`Evaluation`], the status
//! types and [`async_trait`](macro@async_trait) are re-exported here, and the [`prelude`] has
//! what an embedding writes most. The crates underneath are in [`deps`].
//!
//! # Example: a complete embedding
//!
//! A host whose state is one counter and whose "language" is a number to
//! add; the score is the counter itself.
//!
//! ```
//! use std::io;
//! use pragma_executor_local::prelude::*;
//! use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
//!
//! #[derive(Clone, Debug, Default, PartialEq)]
//! struct Counter { total: i64, iteration: Option<u64> }
//!
//! struct AddHost;
//!
//! #[async_trait]
//! impl Host for AddHost {
//!     type State = Counter;
//!     async fn run(&self, body: &str, state: &mut Counter, ctx: &IterationContext) -> Result<(), RunError> {
//!         let step: i64 = body.trim().parse().map_err(|_| RunError::Failed(format!("not a number: {body}")))?;
//!         // Each iteration adds `step` times its number.
//!         state.total += step * ctx.iteration as i64;
//!         Ok(())
//!     }
//!     async fn evaluate(&self, _expr: &str, state: &Counter) -> Evaluation {
//!         Evaluation::Score(state.total as f64)
//!     }
//!     async fn snapshot(&self, state: &Counter, out: &mut (dyn AsyncWrite + Send + Unpin)) -> io::Result<()> {
//!         out.write_all(&state.total.to_le_bytes()).await
//!     }
//!     async fn restore(&self, input: &mut (dyn AsyncRead + Send + Unpin)) -> io::Result<Counter> {
//!         let mut bytes = [0u8; 8];
//!         input.read_exact(&mut bytes).await?;
//!         Ok(Counter { total: i64::from_le_bytes(bytes), iteration: None })
//!     }
//!     fn set_iteration_var(&self, state: &mut Counter, _name: &str, iteration: u64) {
//!         state.iteration = Some(iteration);
//!     }
//!     fn remove_iteration_var(&self, state: &mut Counter, _name: &str) {
//!         state.iteration = None;
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), pragma_executor_local::ExecError> {
//! let executor = Executor::new(AddHost, MemoryStore::new(), Config::default().workers(2));
//!
//! // repeat: 0 + 0 + 2 + 4 + 6 = 12 after 4 iterations; checkpoints after
//! // iterations 1 and 3 score 2 and 12, so the last one wins.
//! let handle = executor.submit("#pragma repeat --iterations 4 --checkpoint-period 2 --max-by total\n2", Counter::default()).await?;
//! let outcome = handle.wait().await?;
//! assert_eq!(outcome.status, FinalStatus::Succeeded);
//! let best = outcome.best.expect("a best state");
//! assert_eq!((best.iteration, best.score, best.state.total), (3, Some(12.0), 12));
//! assert_eq!(best.state.iteration, None, "the iteration variable is removed");
//!
//! // parallel, --min-by: each iteration starts from the submitted state (total 5).
//! let cell = "#pragma parallel --iterations 3 --min-by total\n-1";
//! let outcome = executor.submit(cell, Counter { total: 5, iteration: None }).await?.wait().await?;
//! let best = outcome.best.expect("a best state");
//! assert_eq!((best.iteration, best.state.total), (2, 3));
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod config;
pub mod conflict;
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod coordinator;
mod error;
mod executor;
mod job;
mod json_host;
mod op;
mod persist;
mod record;
mod report;
mod shared;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testkit;

pub use backend::TokioBackend;
pub use config::Config;
pub use error::ExecError;
pub use executor::{Executor, Handle, Observer, Recorded};
pub use json_host::{JsonHost, SerdeHost};
pub use persist::candidates::Candidates;
pub use report::{
    Best, BestScore, CandidateScore, Event, FinalStatus, OperationSummary, Outcome, Status, Usage,
    score_json,
};

// The contract, from its own crate (`pragma-contract`), so that an embedder
// depends on this crate alone.
/// The `Host` trait a tool implements (from `pragma-contract`).
pub use pragma_contract::Host;
pub use pragma_contract::{
    ExecutionBackend, InputError, IterationContext, Job, JobOutcome, JobSpec, LocalOutput,
    RemoteOutput, RemoteReport, RemoteState, ReportError, RunError, StateRef, WorkerId,
    derive_seed, load_input, run_spec, run_spec_returning,
};

// What an embedder meets through this crate's API, from the crates that own
// it, so that one dependency is enough.
/// The attribute a [`Host`] or [`ExecutionBackend`] implementation wears.
pub use async_trait::async_trait;
/// The checkpoint stores an executor runs on, their trait, and the log a
/// backend's worker reads input states from ([`run_spec`]).
pub use pragma_checkpoint::{CheckpointLog, LocalStore, MemoryStore, Store};
/// The directive's parse errors, as [`ExecError::Directive`] carries them.
pub use pragma_parse::{Directive, ParseError};
/// Where an operation's phase and counters come from ([`Status::schedule`]).
pub use pragma_scheduler::{Conclusion, FailReason, Phase, Progress, WaitReason};
/// What [`Host::evaluate`] answers.
pub use pragma_selector::{Evaluation, InvalidReason};
/// What [`IterationContext::cancel`] is.
pub use tokio_util::sync::CancellationToken;

/// The crates this one builds on, whole, for what the re-exports above do
/// not cover (a custom [`Store`], the checkpoint log a backend's worker
/// reads).
pub mod deps {
    pub use pragma_checkpoint as checkpoint;
    pub use pragma_contract as contract;
    pub use pragma_parse as parse;
    pub use pragma_scheduler as scheduler;
    pub use pragma_selector as selector;
}

/// What an embedding needs, in one import:
/// `use pragma_executor_local::prelude::*;`.
pub mod prelude {
    pub use crate::{
        CancellationToken, Config, Evaluation, Event, ExecError, Executor, FinalStatus, Handle,
        Host, IterationContext, JsonHost, LocalStore, MemoryStore, Outcome, Phase, Progress,
        RunError, SerdeHost, Status, async_trait,
    };
}
