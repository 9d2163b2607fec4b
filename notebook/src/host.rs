//! [`PythonHost`]: the executor's [`Host`] for Python cells, running each
//! iteration in a worker of a [`WorkerPool`], or in an interpreter of this
//! process (a Ray worker's): one host, the same requests either way.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use pragma_contract::{Host, IterationContext, RunError};
use pragma_selector::Evaluation;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::pool::{WorkerError, WorkerPool};

/// Saved variables, by name.
pub(crate) type Saved = BTreeMap<String, Arc<[u8]>>;

/// A notebook's variables: the namespace as one object graph, saved
/// variable by variable by `pragma_notebook.state` (a variable's bytes
/// refer to the other variables whose objects it holds by name, and to
/// the namespace itself for the globals of its functions), with the
/// kernel's process context under `__pragma_context__`. The bytes are
/// opaque here; the workers make and read them. Equal bytes mean an
/// unchanged value, in the kernel and in any worker.
///
/// The namespace a run leaves stays in its worker's memory as well (see
/// [`IterationContext::result_saved`]): a repeat's next iteration runs on
/// it there, and between checkpoints it is not saved at all. Such a
/// namespace has its variables here only once saved:
/// [`PythonHost::fetch`] makes sure of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace {
    /// The variables, unless they are only in a worker.
    pub(crate) vars: Saved,
    /// The iteration variable to set for the next run, if any.
    pub(crate) iteration: Option<(String, u64)>,
    /// The worker that holds this namespace, if one does.
    resident: Option<Arc<Resident>>,
}

/// A namespace left in a worker's memory by a run.
struct Resident {
    pool: Arc<WorkerPool>,
    worker: u64,
    token: u64,
    /// Its variables, once saved (by the run itself, or fetched).
    saved: tokio::sync::OnceCell<Saved>,
    /// A later run changed it in place: the worker holds it no more.
    consumed: std::sync::atomic::AtomicBool,
}

impl Resident {
    /// Whether its worker still holds it, so that requests can go there.
    fn held(&self) -> bool {
        !self.consumed.load(std::sync::atomic::Ordering::Acquire) && self.pool.holds(self.worker)
    }
}

impl Drop for Resident {
    fn drop(&mut self) {
        if !self.consumed.load(std::sync::atomic::Ordering::Acquire) {
            self.pool.forget(self.worker, self.token);
        }
    }
}

impl std::fmt::Debug for Resident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resident")
            .field("worker", &self.worker)
            .field("token", &self.token)
            .field("saved", &self.saved.initialized())
            .finish_non_exhaustive()
    }
}

impl PartialEq for Resident {
    fn eq(&self, other: &Resident) -> bool {
        (self.worker, self.token) == (other.worker, other.token)
    }
}

impl Eq for Resident {}

impl Namespace {
    /// A namespace of saved variables, here.
    #[cfg_attr(not(feature = "python"), allow(dead_code))] // the Ray worker's
    pub(crate) fn from_saved(vars: Saved) -> Namespace {
        Namespace {
            vars,
            iteration: None,
            resident: None,
        }
    }

    /// An empty namespace.
    pub fn new() -> Namespace {
        Namespace::default()
    }

    /// Sets `name` to a saved value (as the workers save them), in a
    /// namespace whose variables are here.
    pub fn insert(&mut self, name: impl Into<String>, saved: impl Into<Arc<[u8]>>) {
        self.vars.insert(name.into(), saved.into());
    }

    /// The saved value of `name` (`None` also while the namespace is only
    /// in a worker: see [`PythonHost::fetch`]).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.saved()?.get(name).map(|v| &**v)
    }

    /// The variables, by name (none while the namespace is only in a
    /// worker: see [`PythonHost::fetch`]).
    pub fn vars(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.saved()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), &**v))
    }

    /// Whether its variables are here (saved), not only in a worker.
    pub fn is_saved(&self) -> bool {
        self.saved().is_some()
    }

    fn saved(&self) -> Option<&Saved> {
        match &self.resident {
            None => Some(&self.vars),
            Some(resident) => resident.saved.get(),
        }
    }

    /// Sets the iteration variable `name` to `iteration` for the next run.
    pub(crate) fn set_iteration(&mut self, name: &str, iteration: u64) {
        self.iteration = Some((name.to_owned(), iteration));
    }

    /// Sets no iteration variable for later runs. The variables are left
    /// as they are: a worker sets the iteration variable for a run only,
    /// and puts back afterwards what the namespace had under that name
    /// (unless the body assigned it), so a user's own variable of that
    /// name is state like any other.
    pub(crate) fn remove_iteration(&mut self) {
        self.iteration = None;
    }

    /// The iteration variable to set, and its value, if any.
    pub(crate) fn iteration_var(&self) -> (Option<&str>, Option<u64>) {
        match &self.iteration {
            Some((var, iteration)) => (Some(var), Some(*iteration)),
            None => (None, None),
        }
    }

    /// The worker to send a request about it to, and the state's token
    /// there, if a worker holds it.
    fn held(&self) -> Option<(u64, u64)> {
        self.resident
            .as_ref()
            .filter(|r| r.held())
            .map(|r| (r.worker, r.token))
    }

    /// What a request that carries the variables sends: names and bytes.
    pub(crate) fn names_and_blobs(&self) -> Result<(Vec<&str>, Vec<&[u8]>), RunError> {
        let saved = self.saved().ok_or_else(|| {
            RunError::Lost("the worker process that held the state is gone".into())
        })?;
        Ok((
            saved.keys().map(String::as_str).collect(),
            saved.values().map(|v| &**v).collect(),
        ))
    }
}

/// Runs Python bodies in worker interpreters. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PythonHost {
    runs_in: Interpreters,
    /// Where each run's standard output and error are kept:
    /// `OP/ITERATION-ATTEMPT.out` and `.err`.
    logs: Option<PathBuf>,
}

/// Where a host's bodies run.
#[derive(Debug, Clone)]
enum Interpreters {
    /// The worker processes of a pool, where the namespace a run leaves
    /// may stay resident for the next.
    Pool(Arc<WorkerPool>),
    /// An interpreter of this process (a Ray worker's): the namespace
    /// travels in and out with each request; the interpreter keeps the
    /// one a run left only for the scoring that follows, within the job.
    Here(Arc<dyn InterpreterHere>),
}

/// An interpreter of this process that answers the requests of
/// `pragma_notebook.worker` (its `handle_here`), as a pool's worker
/// answers them through its pipe.
#[async_trait]
pub(crate) trait InterpreterHere: Send + Sync + std::fmt::Debug + 'static {
    /// Answers the request `header` with its `blobs`: the answer's header
    /// and blobs, or why there is none.
    async fn call(
        &self,
        header: serde_json::Value,
        blobs: Vec<Vec<u8>>,
    ) -> Result<(serde_json::Value, Vec<Vec<u8>>), String>;
}

impl PythonHost {
    /// A host running bodies in `pool`'s workers.
    pub fn new(pool: Arc<WorkerPool>) -> PythonHost {
        PythonHost {
            runs_in: Interpreters::Pool(pool),
            logs: None,
        }
    }

    /// A host running bodies in `interpreter`, of this process.
    #[cfg_attr(not(feature = "python"), allow(dead_code))] // the Ray worker's
    pub(crate) fn here(interpreter: Arc<dyn InterpreterHere>) -> PythonHost {
        PythonHost {
            runs_in: Interpreters::Here(interpreter),
            logs: None,
        }
    }

    /// Keeps each run's output under `logs` (as `pragma logs` reads them).
    pub fn with_logs(mut self, logs: impl Into<PathBuf>) -> PythonHost {
        self.logs = Some(logs.into());
        self
    }
}

/// Keeps a run's output under `logs` (as `pragma logs` reads it); a
/// failure to do so only costs the log.
pub(crate) async fn keep_output(
    logs: Option<&std::path::Path>,
    ctx: &IterationContext,
    answer: &serde_json::Value,
) {
    let Some(logs) = logs else { return };
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

fn worker_failure(error: WorkerError) -> RunError {
    match error {
        WorkerError::Cancelled => RunError::Cancelled,
        // Killed, out of memory (with the state it held): a preemption;
        // the run is lost work.
        lost @ (WorkerError::Died(_) | WorkerError::Gone) => RunError::Lost(lost.to_string()),
        other => RunError::Failed(other.to_string()),
    }
}

impl PythonHost {
    /// Makes sure `state`'s variables are here, asking the worker that
    /// holds it to save them if need be.
    pub async fn fetch(&self, state: &Namespace) -> io::Result<()> {
        let Some(resident) = &state.resident else {
            return Ok(());
        };
        resident
            .saved
            .get_or_try_init(|| async {
                if !resident.held() {
                    return Err(io::Error::other(
                        "the worker process that held the state is gone",
                    ));
                }
                let header = json!({"op": "dump", "resident": resident.token});
                let never = tokio_util::sync::CancellationToken::new();
                let (answer, blobs, _) = resident
                    .pool
                    .call(Some(resident.worker), None, &header, &[], &never)
                    .await
                    .map_err(io::Error::other)?;
                if answer["ok"] != true {
                    return Err(io::Error::other(run_error(&answer).to_string()));
                }
                Ok(saved_vars(&answer, blobs))
            })
            .await?;
        Ok(())
    }
}

/// The variables an answer names, with the blobs that came with it.
pub(crate) fn saved_vars(answer: &serde_json::Value, blobs: Vec<Vec<u8>>) -> Saved {
    let names = answer["vars"].as_array().cloned().unwrap_or_default();
    names
        .iter()
        .zip(blobs)
        .map(|(name, blob)| {
            (
                name.as_str().unwrap_or_default().to_owned(),
                Arc::from(blob),
            )
        })
        .collect()
}

impl PythonHost {
    /// Runs the body in an interpreter of this process: the namespace goes
    /// in saved and comes back saved, whatever the context says of saving
    /// it (nothing stays here between runs).
    async fn run_here(
        &self,
        here: &dyn InterpreterHere,
        body: &str,
        state: &mut Namespace,
        ctx: &IterationContext,
    ) -> Result<(), RunError> {
        let (names, blobs) = state.names_and_blobs()?;
        let mut header = run_request(body, state, ctx, &names, None);
        header["dump"] = json!(true);
        let blobs = blobs.into_iter().map(<[u8]>::to_vec).collect();
        let (answer, blobs) = here.call(header, blobs).await.map_err(RunError::Failed)?;
        keep_output(self.logs.as_deref(), ctx, &answer).await;
        if answer["ok"] != true {
            return Err(run_error(&answer));
        }
        *state = Namespace::from_saved(saved_vars(&answer, blobs));
        Ok(())
    }
}

/// The request to run `body` on `state` (its variables `names`, or the
/// namespace a worker holds as `resident`).
fn run_request(
    body: &str,
    state: &Namespace,
    ctx: &IterationContext,
    names: &[&str],
    resident: Option<u64>,
) -> serde_json::Value {
    let (var, iteration) = state.iteration_var();
    json!({
        "op": "run",
        "body": body,
        "vars": names,
        "resident": resident,
        "dump": ctx.result_saved,
        "iteration_var": var,
        "iteration": iteration,
        "seed": ctx.seed,
    })
}

/// The request to score `state` (its variables `names`, or the namespace
/// a worker holds as `resident`) with `expr`.
fn eval_request(
    expr: &str,
    state: &Namespace,
    names: &[&str],
    resident: Option<u64>,
) -> serde_json::Value {
    let (var, iteration) = state.iteration_var();
    json!({
        "op": "eval",
        "expr": expr,
        "vars": names,
        "resident": resident,
        "iteration_var": var,
        "iteration": iteration,
    })
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
        let pool = match &self.runs_in {
            Interpreters::Pool(pool) => pool,
            Interpreters::Here(here) => return self.run_here(&**here, body, state, ctx).await,
        };
        let held = state.held();
        if let (Some(_), Some(resident)) = (held, &state.resident)
            && Arc::strong_count(resident) > 1
        {
            // Other states hold this value: it is saved before the body
            // changes it in place.
            self.fetch(state)
                .await
                .map_err(|e| RunError::Lost(e.to_string()))?;
        }
        let (names, blobs) = match held {
            Some(_) => (Vec::new(), Vec::new()),
            None => state.names_and_blobs()?,
        };
        let header = run_request(body, state, ctx, &names, held.map(|(_, token)| token));
        let answer = pool
            .call(
                held.map(|(worker, _)| worker),
                Some(&ctx.op),
                &header,
                &blobs,
                &ctx.cancel,
            )
            .await;
        if held.is_some()
            && let Some(resident) = &state.resident
        {
            // Sent: the worker took it (or died with it).
            resident
                .consumed
                .store(true, std::sync::atomic::Ordering::Release);
        }
        let (answer, blobs, worker) = answer.map_err(worker_failure)?;
        keep_output(self.logs.as_deref(), ctx, &answer).await;
        if answer["ok"] != true {
            return Err(run_error(&answer));
        }
        let saved = tokio::sync::OnceCell::new();
        if ctx.result_saved {
            let _ = saved.set(saved_vars(&answer, blobs));
        }
        state.vars = Saved::new();
        state.resident = answer["token"].as_u64().map(|token| {
            Arc::new(Resident {
                pool: Arc::clone(pool),
                worker,
                token,
                saved,
                consumed: std::sync::atomic::AtomicBool::new(false),
            })
        });
        Ok(())
    }

    async fn evaluate(&self, expr: &str, state: &Namespace) -> Evaluation {
        let held = state.held();
        let (names, blobs) = match held {
            Some(_) => (Vec::new(), Vec::new()),
            None => match state.names_and_blobs() {
                Ok(carried) => carried,
                Err(e) => return Evaluation::failed(e.to_string()),
            },
        };
        let header = eval_request(expr, state, &names, held.map(|(_, token)| token));
        let answer = match &self.runs_in {
            Interpreters::Here(here) => here
                .call(header, blobs.into_iter().map(<[u8]>::to_vec).collect())
                .await
                .map(|(answer, _)| answer),
            Interpreters::Pool(pool) => {
                let never = tokio_util::sync::CancellationToken::new();
                let to = held.map(|(worker, _)| worker);
                pool.call(to, None, &header, &blobs, &never)
                    .await
                    .map(|(answer, _, _)| answer)
                    .map_err(|e| e.to_string())
            }
        };
        match answer {
            Err(e) => Evaluation::failed(e),
            Ok(answer) => evaluation_of(&answer),
        }
    }

    async fn snapshot(
        &self,
        state: &Namespace,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> io::Result<()> {
        self.fetch(state).await?;
        write_snapshot(state, out).await
    }

    async fn restore(&self, input: &mut (dyn AsyncRead + Send + Unpin)) -> io::Result<Namespace> {
        read_snapshot(input).await
    }

    fn set_iteration_var(&self, state: &mut Namespace, name: &str, iteration: u64) {
        state.set_iteration(name, iteration);
    }

    fn remove_iteration_var(&self, state: &mut Namespace, _name: &str) {
        state.remove_iteration();
    }
}

/// What a worker's answer to an evaluation says: the score, or why there
/// is none.
pub(crate) fn evaluation_of(answer: &serde_json::Value) -> Evaluation {
    if answer["ok"] != true {
        return Evaluation::failed(
            answer["error"]
                .as_str()
                .unwrap_or("the expression failed")
                .to_owned(),
        );
    }
    let text = answer["score"].as_str().unwrap_or("nan");
    match text.parse::<f64>() {
        Ok(score) => Evaluation::Score(score),
        Err(_) => Evaluation::failed(format!("the score `{text}` is not a number")),
    }
}

/// A namespace snapshot read whole from `input`.
pub(crate) async fn read_snapshot(
    input: &mut (dyn AsyncRead + Send + Unpin),
) -> io::Result<Namespace> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).await?;
    parse_snapshot(&bytes)
}

/// How a worker said a run failed.
pub(crate) fn run_error(answer: &serde_json::Value) -> RunError {
    if answer["gone"] == true {
        return RunError::Lost(
            answer["error"]
                .as_str()
                .unwrap_or("the worker no longer holds the state")
                .to_owned(),
        );
    }
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

/// Writes `state`'s saved variables as a snapshot.
pub(crate) async fn write_snapshot(
    state: &Namespace,
    out: &mut (dyn AsyncWrite + Send + Unpin),
) -> io::Result<()> {
    out.write_all(MAGIC).await?;
    for (name, value) in state.vars() {
        out.write_all(&(name.len() as u32).to_be_bytes()).await?;
        out.write_all(name.as_bytes()).await?;
        out.write_all(&(value.len() as u64).to_be_bytes()).await?;
        out.write_all(value).await?;
    }
    Ok(())
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
        resident: None,
    })
}

/// `bytes` split after `n`, if it is that long.
fn split(bytes: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (bytes.len() >= n).then(|| bytes.split_at(n))
}
