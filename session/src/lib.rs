//! The operation lifecycle that every host of the pragma executor needs,
//! written once.
//!
//! `pragma-executor-local` runs operations; a host (the `pragma` command
//! for shell cells, the notebook host for Python cells, your job runner)
//! also needs the policy around them, and this crate is that policy:
//!
//! - **run or resume** ([`Session::start`]): the same cell on the same live
//!   state resumes the operation an earlier run left unfinished (killed,
//!   crashed, cancelled, stopped by a full store) from its last checkpoint;
//!   anything else starts a new one;
//! - **one runner per operation**: each operation's record names the
//!   process (or batch job, through a [`JobQueue`]) that runs it; a second
//!   start of the same cell and state is refused while that runner lives,
//!   also when both start at the same instant (they take turns on a lock);
//! - **apply with conflicts** ([`Session::finish`], [`Session::apply_kept`]):
//!   the best state's changes are applied to the live state variable by
//!   variable; a variable changed both by the operation and live since
//!   submission is a conflict, settled by an explicit choice per variable
//!   or a rule declared up front ([`Settle`]), or left, with the result
//!   kept until the user settles it;
//! - **a typed [`Summary`]** of how each operation ended (status, best,
//!   failed iterations, conflicts, usage, apply error), which is what a
//!   host prints, what its exit codes come from, and what the records keep;
//! - **the records** ([`Records`]) that status, report and logs read.
//!
//! A host supplies what only it knows through [`LiveState`]: how to
//! capture its live state, digest it per variable, and write changes back.
//!
//! # Example: a complete embedding for a new host
//!
//! A host whose state is a map of integer variables, whose body names a
//! variable to add the iteration number to, and whose score is a
//! variable's value; its live state is a shared map that keeps changing
//! while the operation runs.
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::io;
//! use std::sync::{Arc, Mutex};
//! // One import for the executor's and the lifecycle's names.
//! use pragma_session::prelude::*;
//! use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
//!
//! type Vars = BTreeMap<String, i64>;
//!
//! struct AddHost;
//!
//! #[async_trait]
//! impl Host for AddHost {
//!     type State = Vars;
//!     async fn run(&self, body: &str, state: &mut Vars, ctx: &IterationContext) -> Result<(), RunError> {
//!         *state.entry(body.trim().to_owned()).or_default() += ctx.iteration as i64;
//!         Ok(())
//!     }
//!     async fn evaluate(&self, expr: &str, state: &Vars) -> Evaluation {
//!         match state.get(expr) {
//!             Some(value) => Evaluation::Score(*value as f64),
//!             None => Evaluation::failed(format!("no variable `{expr}`")),
//!         }
//!     }
//!     async fn snapshot(&self, state: &Vars, out: &mut (dyn AsyncWrite + Send + Unpin)) -> io::Result<()> {
//!         out.write_all(&serde_json::to_vec(state)?).await
//!     }
//!     async fn restore(&self, input: &mut (dyn AsyncRead + Send + Unpin)) -> io::Result<Vars> {
//!         let mut bytes = Vec::new();
//!         input.read_to_end(&mut bytes).await?;
//!         Ok(serde_json::from_slice(&bytes)?)
//!     }
//!     fn set_iteration_var(&self, _state: &mut Vars, _name: &str, _iteration: u64) {}
//!     fn remove_iteration_var(&self, _state: &mut Vars, _name: &str) {}
//! }
//!
//! /// The host's live variables.
//! struct Live(Arc<Mutex<Vars>>);
//!
//! #[async_trait]
//! impl LiveState for Live {
//!     type State = Vars;
//!     type Digest = i64; // small values digest as themselves
//!     fn identity(&self) -> String {
//!         "the-live-map".to_owned()
//!     }
//!     async fn capture(&self) -> io::Result<(Vars, Digests<i64>)> {
//!         let vars = self.0.lock().unwrap().clone();
//!         Ok((vars.clone(), vars))
//!     }
//!     async fn digests(&self) -> io::Result<Digests<i64>> {
//!         Ok(self.0.lock().unwrap().clone())
//!     }
//!     async fn digests_of(&self, state: &Vars) -> io::Result<Digests<i64>> {
//!         Ok(state.clone())
//!     }
//!     async fn apply(&self, result: &Vars, changes: &[Change]) -> io::Result<()> {
//!         let mut live = self.0.lock().unwrap();
//!         for change in changes {
//!             match change {
//!                 Change::Set(name) => { live.insert(name.clone(), result[name]); }
//!                 Change::Remove(name) => { live.remove(name); }
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let records = tempfile::tempdir()?;
//! let executor = Executor::new(AddHost, MemoryStore::new(), Config::default());
//! let session = Session::new(executor, Records::new(records.path()));
//! let live = Live(Arc::new(Mutex::new(BTreeMap::from([("x".into(), 0), ("notes".into(), 1)]))));
//!
//! // The body adds to `x`; meanwhile the host itself changes `notes`.
//! let cell = "#pragma repeat --iterations 4 --max-by x\nx";
//! let running = session.start(&StartRequest::new(cell.parse()?, "cell 1"), &live).await?;
//! live.0.lock().unwrap().insert("notes".into(), 2);
//! let outcome = running.handle.wait().await?;
//! let summary = session.finish(running.ticket, outcome, &live, &Settle::ask()).await;
//!
//! assert_eq!(summary.ending(), Ending::Applied);
//! assert_eq!(live.0.lock().unwrap()["x"], 0 + 1 + 2 + 3);
//! assert_eq!(live.0.lock().unwrap()["notes"], 2, "only the operation's changes are applied");
//! // The records keep how it ended, for status and for other processes.
//! assert_eq!(session.records().outcome(&summary.op), Some(summary));
//! # Ok(()) }
//! ```
//!
//! # What a host still does
//!
//! Flags or magics, progress, how its user is told to go on; its own
//! [`Host`](pragma_executor_local::Host) (running bodies, scoring,
//! snapshots) and [`LiveState`]. The library never prints: problems that
//! do not change an outcome come back as warnings
//! ([`Running::warnings`], [`Summary::warnings`]).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

mod error;
mod follow;
mod live;
mod location;
pub mod procfs;
mod records;
mod runner;
mod session;
mod summary;

pub use error::SessionError;
pub use follow::{FOLLOW_TICK, FollowObserver};
pub use live::{Change, Digests, LiveState};
#[cfg(feature = "s3")]
#[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
pub use location::open_bucket;
pub use location::{StoreError, StoreLocation, StoreSpec};
pub use records::{Damaged, NotAnOpId, Records, RunRecord, check_op_id, run_key, write_atomically};
pub use runner::{JobQueue, Runner, this_host};
pub use session::{Applied, RunState, Running, Session, Settle, StartRequest, Ticket};
pub use summary::{Ending, FailedIteration, Summary};

pub use pragma_executor_local::conflict::{Resolution, Rule};

/// The executor this crate drives, whole: a host built on the session
/// needs no dependency of its own on it.
pub use pragma_executor_local as executor;

/// What a host built on the session needs, in one import:
/// `use pragma_session::prelude::*;` (the executor's prelude with it).
pub mod prelude {
    pub use crate::{
        Change, Digests, Ending, LiveState, Records, Session, SessionError, Settle, StartRequest,
        Summary,
    };
    pub use pragma_executor_local::prelude::*;
}
