//! What an embedding tool provides: the host that runs bodies on states.

use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use pragma_selector::Evaluation;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// What one run of the body knows about itself.
///
/// New fields may come in later versions: outside this crate, make one
/// with [`IterationContext::new`] and change its fields after.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IterationContext {
    /// The operation's id.
    pub op: Arc<str>,
    /// The iteration number, from 0.
    pub iteration: u64,
    /// Which start of this iteration this is, from 1: retries and re-runs
    /// after a preemption count, and so do starts before a resume of the
    /// iterations that were running at the operation's last record.
    pub attempt: u32,
    /// The name of the iteration variable (`--iteration-var`).
    pub iteration_var: Arc<str>,
    /// A seed derived from the operation id and the iteration number only:
    /// the same after a retry or a resume ([`derive_seed`]).
    pub seed: u64,
    /// Whether the executor saves the state this run leaves: a candidate
    /// (parallel, async) or a repeat's checkpoint is saved; a repeat's
    /// iteration between checkpoints only feeds the next iteration, which
    /// runs in this process after it. A host may then leave that state
    /// where the body ran (a worker's memory) instead of making it
    /// portable, as long as [`snapshot`](Host::snapshot) and
    /// [`evaluate`](Host::evaluate) still work on it. A host that makes
    /// every state portable ignores it.
    pub result_saved: bool,
    /// The selection expression this run's result is scored with right
    /// after it ([`Host::evaluate`] on the state it leaves), if it is a
    /// candidate: a host that can score in the same go (the shell host runs
    /// it in the body's own shell, one process start less) may, and answer
    /// that `evaluate` from what it found.
    pub expr: Option<Arc<str>>,
    /// Cancelled when the run must stop (the operation was cancelled or
    /// interrupted). A host should stop promptly when it fires.
    pub cancel: CancellationToken,
}

impl IterationContext {
    /// The context of the first attempt at `iteration` of operation `op`,
    /// as the executor would give it: iteration variable `iteration`, the
    /// derived seed, a saved result, no expression, a fresh cancellation
    /// token. For a host's own tests: change any field after.
    ///
    /// ```
    /// use pragma_contract::{IterationContext, derive_seed};
    /// let ctx = IterationContext::new("op-1", 3);
    /// assert_eq!((ctx.attempt, ctx.seed), (1, derive_seed("op-1", 3)));
    /// assert!(!ctx.cancel.is_cancelled());
    /// ```
    pub fn new(op: &str, iteration: u64) -> IterationContext {
        IterationContext {
            op: Arc::from(op),
            iteration,
            attempt: 1,
            iteration_var: Arc::from("iteration"),
            seed: derive_seed(op, iteration),
            result_saved: true,
            expr: None,
            cancel: CancellationToken::new(),
        }
    }
}

/// Why a run of the body did not finish.
///
/// Serialisable, so that it crosses processes as it is (in a
/// [`RemoteReport`](crate::RemoteReport)): `{"kind": "failed", "message":
/// "..."}`, `{"kind": "cancelled"}`.
///
/// Exhaustive on purpose: the executor must treat every kind as it means
/// (retry, stop, count as lost), so a new kind is a breaking change of the
/// contract, never a silent fallback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "message")]
pub enum RunError {
    /// The body failed (an error, a non-zero exit). It may be retried.
    #[error("{0}")]
    Failed(String),
    /// The body asked for interactive input (`input()`, `getpass()`, reading
    /// a terminal). The operation ends as interrupted; nothing is applied.
    #[error("the body asked for interactive input: {0}")]
    InteractiveInput(String),
    /// The run stopped because [`IterationContext::cancel`] fired.
    #[error("cancelled")]
    Cancelled,
    /// The process running the body died under it (killed, out of
    /// memory): a preemption, not a failure of the body. The iteration runs
    /// again within the preemption budget and the run counts as work lost.
    #[error("the process running the body was lost: {0}")]
    Lost(String),
    /// The host's own storage is full (the disk of its working copies):
    /// the operation stops at its last checkpoint, resumable once there is
    /// room, as when the checkpoint store is full. Not a failure of the
    /// body, so no retry is spent on it.
    #[error("no space left for the run: {0}")]
    StorageFull(String),
}

/// Runs cell bodies on states: what a notebook kernel, a job runner or the
/// `pragma` command provides to the executor.
///
/// # Contract
///
/// - [`run`](Host::run) changes `state` in place by running the body once.
///   It must not share anything between states: the executor gives each
///   parallel iteration its own clone of the state at submission.
/// - [`evaluate`](Host::evaluate) scores a state by the selection expression;
///   a failure is an [`Evaluation::Invalid`], never a panic.
/// - [`snapshot`](Host::snapshot) writes the state as bytes (streamed: it may
///   be large) and [`restore`](Host::restore) reads them back; restoring a
///   snapshot must give a state that behaves like the original.
/// - [`unsaveable`](Host::unsaveable) names the variables that cannot be
///   snapshotted (open files, sockets); the executor refuses to start when
///   there are any, and says which.
///
/// The executor's `conformance::host` (its `conformance` feature) checks an
/// implementation against this contract.
///
/// # Pitfalls
///
/// - Seeds: use [`IterationContext::seed`] for every random choice, so a
///   retried or resumed iteration gives the same result.
/// - Cancellation: long bodies should watch [`IterationContext::cancel`];
///   the executor also drops the future of a cancelled run.
/// - Panics: a panic in [`run`](Host::run) (user code often panics) fails
///   the iteration as a [`RunError::Failed`] saying `the host panicked
///   running the body: MESSAGE`, retried within the budget; one in
///   [`evaluate`](Host::evaluate) is an invalid score. The state the run
///   panicked on is dropped. Better still, turn the panic into a
///   `RunError` yourself, with what the user needs to know.
#[async_trait]
pub trait Host: Send + Sync + 'static {
    /// The state the body runs on (a kernel's namespace, a directory).
    type State: Clone + Send + Sync + 'static;

    /// Runs the body once on `state`.
    async fn run(
        &self,
        body: &str,
        state: &mut Self::State,
        ctx: &IterationContext,
    ) -> Result<(), RunError>;

    /// Evaluates the selection expression on `state`.
    async fn evaluate(&self, expr: &str, state: &Self::State) -> Evaluation;

    /// Writes `state` to `out`.
    async fn snapshot(
        &self,
        state: &Self::State,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> io::Result<()>;

    /// Reads a state written by [`snapshot`](Host::snapshot).
    async fn restore(&self, input: &mut (dyn AsyncRead + Send + Unpin)) -> io::Result<Self::State>;

    /// Sets the iteration variable `name` to `iteration` in `state`.
    fn set_iteration_var(&self, state: &mut Self::State, name: &str, iteration: u64);

    /// Removes the iteration variable `name` from `state`.
    fn remove_iteration_var(&self, state: &mut Self::State, name: &str);

    /// The variables of `state` that cannot be saved, by name.
    fn unsaveable(&self, _state: &Self::State) -> Vec<String> {
        Vec::new()
    }
}

/// The seed of an iteration: a 64-bit FNV-1a hash of the operation id and
/// the iteration number, mixed by SplitMix64. Stable across runs, versions
/// and machines.
///
/// ```
/// use pragma_contract::derive_seed;
/// assert_eq!(derive_seed("op", 3), derive_seed("op", 3));
/// assert_ne!(derive_seed("op", 3), derive_seed("op", 4));
/// ```
pub fn derive_seed(op: &str, iteration: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in op.bytes().chain(iteration.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
