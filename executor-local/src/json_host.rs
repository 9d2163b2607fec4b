//! A host over a serde state writes only `run` and `evaluate`: [`JsonHost`]
//! snapshots and restores its states as JSON.

use std::io;

use async_trait::async_trait;
use pragma_contract::{Host, IterationContext, RunError};
use pragma_selector::Evaluation;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The part of a [`Host`] that is about running and scoring, for a state
/// that serde can save. Wrap it in a [`JsonHost`] to get a whole `Host`.
///
/// The iteration variable is not set in the state (a serde state has no
/// place to put it in general): the body reads [`IterationContext::iteration`].
/// [`Host::run`]'s contract and pitfalls hold for [`run`](SerdeHost::run).
#[async_trait]
pub trait SerdeHost: Send + Sync + 'static {
    /// The state the body runs on.
    type State: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// Runs the body once on `state` (see [`Host::run`]).
    async fn run(
        &self,
        body: &str,
        state: &mut Self::State,
        ctx: &IterationContext,
    ) -> Result<(), RunError>;

    /// Evaluates the selection expression on `state` (see
    /// [`Host::evaluate`]).
    async fn evaluate(&self, expr: &str, state: &Self::State) -> Evaluation;
}

/// A [`Host`] made of a [`SerdeHost`]: states are saved as JSON.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use pragma_executor_local::prelude::*;
/// use pragma_executor_local::{JsonHost, SerdeHost};
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Model { weight: f64, loss: f64 }
///
/// /// Each run halves the distance of the weight to 3.
/// struct Train;
///
/// #[async_trait]
/// impl SerdeHost for Train {
///     type State = Model;
///     async fn run(&self, _body: &str, model: &mut Model, _ctx: &IterationContext) -> Result<(), RunError> {
///         model.weight += (3.0 - model.weight) / 2.0;
///         model.loss = (3.0 - model.weight).abs();
///         Ok(())
///     }
///     async fn evaluate(&self, _expr: &str, model: &Model) -> Evaluation {
///         Evaluation::Score(model.loss)
///     }
/// }
///
/// let executor = Executor::new(JsonHost(Train), MemoryStore::new(), Config::default());
/// let cell = "#pragma repeat --iterations 4 --checkpoint-period 2 --min-by loss\ntrain()";
/// let outcome = executor.submit(cell, Model { weight: 1.0, loss: 2.0 }).await.unwrap().wait().await.unwrap();
/// assert_eq!(outcome.best.unwrap().state.weight, 2.875);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonHost<H>(pub H);

#[async_trait]
impl<H: SerdeHost> Host for JsonHost<H> {
    type State = H::State;

    async fn run(
        &self,
        body: &str,
        state: &mut H::State,
        ctx: &IterationContext,
    ) -> Result<(), RunError> {
        self.0.run(body, state, ctx).await
    }

    async fn evaluate(&self, expr: &str, state: &H::State) -> Evaluation {
        self.0.evaluate(expr, state).await
    }

    async fn snapshot(
        &self,
        state: &H::State,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> io::Result<()> {
        let bytes = serde_json::to_vec(state).map_err(io::Error::other)?;
        out.write_all(&bytes).await
    }

    async fn restore(&self, input: &mut (dyn AsyncRead + Send + Unpin)) -> io::Result<H::State> {
        let mut bytes = Vec::new();
        input.read_to_end(&mut bytes).await?;
        serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    fn set_iteration_var(&self, _state: &mut H::State, _name: &str, _iteration: u64) {}

    fn remove_iteration_var(&self, _state: &mut H::State, _name: &str) {}
}
