//! [`PythonHost`]: the executor's [`Host`] for Python cells, running each
//! iteration in a worker of a [`WorkerPool`].

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use pragma_executor_local::{Host, IterationContext, RunError};
use pragma_selector::Evaluation;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::pool::{WorkerError, WorkerPool};

/// A notebook's variables, each saved on its own: `P` and its pickle, or
/// `M` and a module's name (imported again where it is loaded). The bytes
/// are opaque here; the workers make and read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace {
    vars: BTreeMap<String, Arc<[u8]>>,
    /// The iteration variable to set for the next run, if any.
    iteration: Option<(String, u64)>,
}

impl Namespace {
    /// An empty namespace.
    pub fn new() -> Namespace {
        Namespace::default()
    }

    /// Sets `name` to a saved value (as the workers save them).
    pub fn insert(&mut self, name: impl Into<String>, saved: impl Into<Arc<[u8]>>) {
        self.vars.insert(name.into(), saved.into());
    }

    /// The saved value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.vars.get(name).map(|v| &**v)
    }

    /// The variables, by name.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.vars.iter().map(|(k, v)| (k.as_str(), &**v))
    }

    /// The iteration variable to set, and its value, if any.
    fn iteration_var(&self) -> (Option<&str>, Option<u64>) {
        match &self.iteration {
            Some((var, iteration)) => (Some(var), Some(*iteration)),
            None => (None, None),
        }
    }

    fn names(&self) -> Vec<&str> {
        self.vars.keys().map(String::as_str).collect()
    }

    fn blobs(&self) -> Vec<&[u8]> {
        self.vars.values().map(|v| &**v).collect()
    }
}

/// Runs Python bodies in worker interpreters. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PythonHost {
    pool: Arc<WorkerPool>,
    /// Where each run's standard output and error are kept:
    /// `OP/ITERATION-ATTEMPT.out` and `.err`.
    logs: Option<PathBuf>,
}

impl PythonHost {
    /// A host running bodies in `pool`'s workers.
    pub fn new(pool: Arc<WorkerPool>) -> PythonHost {
        PythonHost { pool, logs: None }
    }

    /// Keeps each run's output under `logs` (as `pragma logs` reads them).
    pub fn with_logs(mut self, logs: impl Into<PathBuf>) -> PythonHost {
        self.logs = Some(logs.into());
        self
    }

    /// Keeps a run's output; a failure to do so only costs the log.
    async fn keep_output(&self, ctx: &IterationContext, answer: &serde_json::Value) {
        let Some(logs) = &self.logs else { return };
        let dir = logs.join(&*ctx.op);
        for (stream, extension) in [("stdout", "out"), ("stderr", "err")] {
            let text = answer[stream].as_str().unwrap_or_default();
            if text.is_empty() {
                continue;
            }
            if tokio::fs::create_dir_all(&dir).await.is_ok() {
                let path = dir.join(format!("{}-{}.{extension}", ctx.iteration, ctx.attempt));
                let _ = tokio::fs::write(path, text).await;
            }
        }
    }
}

fn worker_failure(error: WorkerError) -> RunError {
    match error {
        WorkerError::Cancelled => RunError::Cancelled,
        // Killed, out of memory: a preemption; the run is lost work.
        died @ WorkerError::Died(_) => RunError::Lost(died.to_string()),
        other => RunError::Failed(other.to_string()),
    }
}

#[async_trait]
impl Host for PythonHost {
    type State = Namespace;

    async fn run(
        &self,
        body: &str,
        state: &mut Namespace,
        ctx: &IterationContext,
    ) -> Result<(), RunError> {
        let (var, iteration) = state.iteration_var();
        let header = json!({
            "op": "run",
            "body": body,
            "vars": state.names(),
            "iteration_var": var,
            "iteration": iteration,
            "seed": ctx.seed,
        });
        let (answer, blobs) = self
            .pool
            .call(&header, &state.blobs(), &ctx.cancel)
            .await
            .map_err(worker_failure)?;
        self.keep_output(ctx, &answer).await;
        if answer["ok"] != true {
            return Err(run_error(&answer));
        }
        let names = answer["vars"].as_array().cloned().unwrap_or_default();
        let mut vars = BTreeMap::new();
        for (name, blob) in names.iter().zip(blobs) {
            vars.insert(
                name.as_str().unwrap_or_default().to_owned(),
                Arc::from(blob),
            );
        }
        state.vars = vars;
        Ok(())
    }

    async fn evaluate(&self, expr: &str, state: &Namespace) -> Evaluation {
        let (var, iteration) = state.iteration_var();
        let header = json!({
            "op": "eval",
            "expr": expr,
            "vars": state.names(),
            "iteration_var": var,
            "iteration": iteration,
        });
        let never = tokio_util::sync::CancellationToken::new();
        match self.pool.call(&header, &state.blobs(), &never).await {
            Err(e) => Evaluation::failed(e.to_string()),
            Ok((answer, _)) if answer["ok"] == true => {
                let text = answer["score"].as_str().unwrap_or("nan");
                match text.parse::<f64>() {
                    Ok(score) => Evaluation::Score(score),
                    Err(_) => Evaluation::failed(format!("the score `{text}` is not a number")),
                }
            }
            Ok((answer, _)) => Evaluation::failed(
                answer["error"]
                    .as_str()
                    .unwrap_or("the expression failed")
                    .to_owned(),
            ),
        }
    }

    async fn snapshot(
        &self,
        state: &Namespace,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> io::Result<()> {
        out.write_all(MAGIC).await?;
        for (name, value) in &state.vars {
            out.write_all(&(name.len() as u32).to_be_bytes()).await?;
            out.write_all(name.as_bytes()).await?;
            out.write_all(&(value.len() as u64).to_be_bytes()).await?;
            out.write_all(value).await?;
        }
        Ok(())
    }

    async fn restore(&self, input: &mut (dyn AsyncRead + Send + Unpin)) -> io::Result<Namespace> {
        let mut bytes = Vec::new();
        input.read_to_end(&mut bytes).await?;
        parse_snapshot(&bytes)
    }

    fn set_iteration_var(&self, state: &mut Namespace, name: &str, iteration: u64) {
        state.iteration = Some((name.to_owned(), iteration));
    }

    fn remove_iteration_var(&self, state: &mut Namespace, name: &str) {
        state.iteration = None;
        state.vars.remove(name);
    }
}

/// How a worker said a run failed.
fn run_error(answer: &serde_json::Value) -> RunError {
    if let Some(asked) = answer["interactive"].as_str() {
        return RunError::InteractiveInput(asked.to_owned());
    }
    if let Some(unsaveable) = answer["unsaveable"].as_array() {
        let named: Vec<String> = unsaveable
            .iter()
            .map(|pair| {
                format!(
                    "{} ({})",
                    pair[0].as_str().unwrap_or("?"),
                    pair[1].as_str().unwrap_or("?")
                )
            })
            .collect();
        return RunError::Failed(format!(
            "The following variables cannot be serialized: {}; delete them at the end of the cell, \
             or recreate them where they are used",
            named.join(", ")
        ));
    }
    RunError::Failed(
        answer["error"]
            .as_str()
            .unwrap_or("the body failed")
            .to_owned(),
    )
}

/// The start of a namespace snapshot, and its format version.
const MAGIC: &[u8] = b"pragma-namespace 1\n";

fn parse_snapshot(bytes: &[u8]) -> io::Result<Namespace> {
    let invalid = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a namespace snapshot {what}"),
        )
    };
    let mut rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| invalid("does not start with its header"))?;
    let mut vars = BTreeMap::new();
    while !rest.is_empty() {
        let (name_length, tail) = split(rest, 4).ok_or_else(|| invalid("is cut short"))?;
        let name_length = u32::from_be_bytes(name_length.try_into().unwrap_or_default()) as usize;
        let (name, tail) = split(tail, name_length).ok_or_else(|| invalid("is cut short"))?;
        let name =
            std::str::from_utf8(name).map_err(|_| invalid("has a name that is not UTF-8"))?;
        let (value_length, tail) = split(tail, 8).ok_or_else(|| invalid("is cut short"))?;
        let value_length = u64::from_be_bytes(value_length.try_into().unwrap_or_default());
        let value_length = usize::try_from(value_length).map_err(|_| invalid("is too large"))?;
        let (value, tail) = split(tail, value_length).ok_or_else(|| invalid("is cut short"))?;
        vars.insert(name.to_owned(), Arc::from(value));
        rest = tail;
    }
    Ok(Namespace {
        vars,
        iteration: None,
    })
}

/// `bytes` split after `n`, if it is that long.
fn split(bytes: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (bytes.len() >= n).then(|| bytes.split_at(n))
}
