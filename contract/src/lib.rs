//! The contract between the pragma executor and what plugs into it: the
//! [`Host`] that runs a cell's body on a state, and the
//! [`ExecutionBackend`] that runs iterations on workers.
//!
//! This crate is to `pragma-executor-local` what `tower-service` is to
//! tower: small, changing rarely, and all a backend or a worker needs. A
//! tool that embeds the executor implements [`Host`]; a crate that runs
//! iterations elsewhere (a SLURM cluster, Ray) implements
//! [`ExecutionBackend`], and its workers run each [`JobSpec`] with
//! [`run_spec`] or [`run_spec_returning`], which restore the input, run the
//! body, score it and save the result exactly as the executor would here.
//!
//! - [`Host`], [`IterationContext`], [`RunError`]: the host's side. Each
//!   trait's docs list its contract and its pitfalls.
//! - [`ExecutionBackend`], [`Job`], [`JobSpec`], [`JobOutcome`]: the
//!   backend's side.
//! - [`RemoteOutput`] and its wire form [`RemoteReport`] (plain JSON):
//!   what a job run elsewhere gives back.
//! - [`run_spec`], [`run_spec_returning`], [`load_input`],
//!   [`run_iteration`]: one iteration, run the one way the executor runs it.
//!
//! The executor's `conformance` feature checks a host or a backend against
//! this contract.
//!
//! # Example: a host, and a job run the way a remote worker runs it
//!
//! ```
//! use std::io;
//! use async_trait::async_trait;
//! use pragma_contract::{Host, IterationContext, JobSpec, RemoteState, RunError, run_spec_returning};
//! use pragma_selector::Evaluation;
//! use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
//!
//! /// A state of one number; a body is a number to add, times the iteration.
//! struct AddHost;
//!
//! #[async_trait]
//! impl Host for AddHost {
//!     type State = i64;
//!     async fn run(&self, body: &str, state: &mut i64, ctx: &IterationContext) -> Result<(), RunError> {
//!         let step: i64 = body.trim().parse().map_err(|_| RunError::Failed(format!("not a number: {body}")))?;
//!         *state += step * ctx.iteration as i64;
//!         Ok(())
//!     }
//!     async fn evaluate(&self, _expr: &str, state: &i64) -> Evaluation {
//!         Evaluation::Score(*state as f64)
//!     }
//!     async fn snapshot(&self, state: &i64, out: &mut (dyn AsyncWrite + Send + Unpin)) -> io::Result<()> {
//!         out.write_all(&state.to_le_bytes()).await
//!     }
//!     async fn restore(&self, input: &mut (dyn AsyncRead + Send + Unpin)) -> io::Result<i64> {
//!         let mut bytes = [0u8; 8];
//!         input.read_exact(&mut bytes).await?;
//!         Ok(i64::from_le_bytes(bytes))
//!     }
//!     fn set_iteration_var(&self, _state: &mut i64, _name: &str, _iteration: u64) {}
//!     fn remove_iteration_var(&self, _state: &mut i64, _name: &str) {}
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Iteration 3 of 4, on the input state 10, scored by `total`.
//! let spec = JobSpec::new("op-1", 3, 4, "2").with_expr("total");
//! let output = run_spec_returning(&AddHost, Ok(10), &spec).await;
//! assert_eq!(output.evaluation, Some(Evaluation::Score(16.0)));
//! assert_eq!(output.result, Ok(RemoteState::Returned(16i64.to_le_bytes().to_vec())));
//!
//! // A body that fails is the run's error, as the executor would see it.
//! let output = run_spec_returning(&AddHost, Ok(10), &JobSpec::new("op-1", 0, 1, "two")).await;
//! assert_eq!(output.result, Err(RunError::Failed("not a number: two".into())));
//! # }
//! ```

#![deny(missing_docs)]

mod backend;
mod host;
mod run;
mod wire;

pub use backend::{ExecutionBackend, Job, JobOutcome, JobSpec, LocalOutput, StateRef};
pub use host::{Host, IterationContext, RunError, derive_seed};
/// The worker slot a job runs on (see [`ExecutionBackend::execute`]).
pub use pragma_scheduler::WorkerId;
pub use run::{InputError, evaluate, load_input, run_iteration, run_spec, run_spec_returning};
pub use wire::{RemoteOutput, RemoteReport, RemoteState, ReportError};
