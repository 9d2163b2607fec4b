//! Notebook cells on a Ray cluster. Both sides live here:
//!
//! - [`RayBackend`], the executor's [`ExecutionBackend`] in the kernel: a
//!   job whose input state is in the store (a parallel or async
//!   iteration) is submitted to the cluster through a dispatcher object of
//!   the Python package (`pragma_notebook.ray_backend.Dispatcher`), in a
//!   Ray task of one CPU, which runs other iterations of its operation
//!   after it if they are short ([`batches`]); the tasks are submitted by
//!   a detached supervisor actor, so that they outlive the kernel and a
//!   new kernel takes their results. One whose input is only in the
//!   kernel's memory (a repeat's next iteration) runs in the kernel's own
//!   workers, which are actors on the cluster too ([`RayWorkers`]). The
//!   executor keeps everything else: scheduling, retries, the preemption
//!   budget, the selection, checkpoints, conflicts and the apply.
//! - [`run_remote_job`], what the task calls in its worker process: it
//!   loads the input state from the store (once per process: the
//!   iterations of an operation share it), runs the body and the selection
//!   expression in that interpreter ([`PythonHost::here`]), and hands the
//!   resulting state back through Ray's object store with its report
//!   ([`run_spec_returning`]); the kernel restores it from there. It is
//!   not durable until the executor records it, as with local workers: a
//!   result lost on the way only means the iteration runs again.
//! - [`RayWorkers`], the kernel's own worker interpreters as Ray actors:
//!   a job that must run in the kernel's workers (a `repeat`'s iterations
//!   after the first, on the state the last one left) runs in one of
//!   them, which keeps that state in its memory from one iteration to the
//!   next, as a local worker does; the kernel asks it for the state only
//!   at checkpoints, and writes them to the store.
//!
//! A Ray worker that dies under its task (its node was lost, it was
//! killed) makes the run it had a preemption: it runs again, within the
//! budget, wherever Ray has room; the task's iterations after it are
//! queued again, counted nowhere (see `batches`). Dropping the jobs of a
//! task (a cancel) cancels it (`ray.cancel`, forced): its bodies stop at
//! once.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use pragma_checkpoint::CheckpointLog;
use pragma_contract::{
    ExecutionBackend, InputError, Job, JobOutcome, JobSpec, RemoteOutput, RemoteReport,
    RemoteState, RunError, StateRef, WorkerId, load_input, run_spec_returning,
};
use pragma_session::StoreLocation;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

mod batches;

use batches::{BATCH, Batches};

use crate::host::InterpreterHere;
use crate::pool::{WorkerChannel, WorkerConfig, WorkerError, WorkerSpawner};
use crate::{Namespace, PythonHost};

/// How long one poll of a task waits for it, at most.
const POLL_SECONDS: f64 = 0.5;

/// How often a backend that follows the cluster reads its CPUs again.
const CLUSTER_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs iterations whose input is in the store as Ray tasks, the others
/// here (see the module docs).
pub(crate) struct RayBackend {
    /// How many tasks may run at once.
    capacity: Arc<AtomicU64>,
    /// The jobs' way to the cluster, in batches.
    batches: Arc<Batches>,
    /// Where its notes to the user go (see [`Notes`]).
    notes: Notes,
}

/// Where the backend's notes go ("iteration 7 was lost on the cluster and
/// runs again"): a file beside the workers' own output, which `%pragma
/// logs` shows; never the kernel's standard error, which Jupyter shows in
/// whatever cell runs at the time. Without a file, standard error.
#[derive(Debug, Clone, Default)]
pub(crate) struct Notes(Option<std::path::PathBuf>);

impl Notes {
    /// Notes appended to `path`.
    pub(crate) fn in_file(path: std::path::PathBuf) -> Notes {
        Notes(Some(path))
    }

    fn write(&self, line: &str) {
        use std::io::Write;
        let written = self.0.as_ref().is_some_and(|path| {
            path.parent()
                .is_none_or(|dir| std::fs::create_dir_all(dir).is_ok())
                && std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut file| writeln!(file, "{line}"))
                    .is_ok()
        });
        if !written {
            eprintln!("{line}");
        }
    }
}

impl RayBackend {
    /// A backend of `capacity` tasks at once; one that follows the
    /// cluster (`follow_cluster`) has as many as the cluster has CPUs,
    /// read again every [`CLUSTER_EVERY`]: nodes that join (an autoscaler's,
    /// one that was down when the kernel connected) are used, the
    /// executor following its capacity.
    pub(crate) fn new(
        dispatcher: Py<PyAny>,
        capacity: u64,
        store: String,
        follow_cluster: bool,
        notes: Notes,
    ) -> RayBackend {
        let dispatcher = Arc::new(dispatcher);
        let capacity = Arc::new(AtomicU64::new(capacity.max(1)));
        if follow_cluster {
            follow_the_cluster(Arc::clone(&dispatcher), Arc::downgrade(&capacity));
        }
        RayBackend {
            batches: Arc::new(Batches::new(dispatcher, Arc::clone(&capacity), store)),
            capacity,
            notes,
        }
    }
}

/// Keeps `capacity` at the cluster's CPUs (`Dispatcher.capacity`), from a
/// thread of its own (it takes the interpreter's lock, and asks the
/// cluster), for as long as the backend is there.
fn follow_the_cluster(dispatcher: Arc<Py<PyAny>>, capacity: std::sync::Weak<AtomicU64>) {
    let followed = std::thread::Builder::new()
        .name("pragma cluster size".into())
        .spawn(move || {
            loop {
                std::thread::sleep(CLUSTER_EVERY);
                let Some(capacity) = capacity.upgrade() else {
                    return;
                };
                // A cluster that cannot say keeps the size it had.
                let cpus = Python::attach(|py| {
                    dispatcher
                        .call_method0(py, "capacity")
                        .and_then(|cpus| cpus.extract::<u64>(py))
                });
                if let Ok(cpus) = cpus {
                    capacity.store(cpus.max(1), Ordering::Relaxed);
                }
            }
        });
    if let Err(e) = followed {
        eprintln!("pragma: the cluster's size is not followed: {e}");
    }
}

/// Calls `method` of the dispatcher on a blocking thread (the
/// interpreter's lock is taken there) with the arguments `args` makes.
async fn call_dispatcher<T>(
    dispatcher: &Arc<Py<PyAny>>,
    method: &'static str,
    args: impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyTuple>>
    + Send
    + 'static,
) -> Result<T, String>
where
    T: for<'py> FromPyObjectOwned<'py> + Send + 'static,
{
    call_dispatcher_with(dispatcher, method, args, |answer| {
        answer.extract::<T>().map_err(Into::into)
    })
    .await
}

/// [`call_dispatcher`], with the answer read by `read`.
async fn call_dispatcher_with<T: Send + 'static>(
    dispatcher: &Arc<Py<PyAny>>,
    method: &'static str,
    args: impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyTuple>>
    + Send
    + 'static,
    read: impl for<'py> FnOnce(Bound<'py, PyAny>) -> PyResult<T> + Send + 'static,
) -> Result<T, String> {
    let dispatcher = Arc::clone(dispatcher);
    tokio::task::spawn_blocking(move || {
        Python::attach(|py| {
            let args = args(py)?;
            read(dispatcher.bind(py).call_method1(method, args)?)
        })
        .map_err(|e: PyErr| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Polls `what` with the dispatcher's `method` (which answers `None`
/// while it runs, waiting at most [`POLL_SECONDS`]) until it ends; what
/// `read` makes of the answer then.
async fn poll_until_ended<T: Send + 'static>(
    dispatcher: &Arc<Py<PyAny>>,
    method: &'static str,
    what: &Arc<Py<PyAny>>,
    read: impl for<'py> Fn(Bound<'py, PyAny>) -> PyResult<Option<T>> + Send + Sync + Copy + 'static,
) -> Result<T, String> {
    loop {
        let polled = Arc::clone(what);
        let answer = call_dispatcher_with(
            dispatcher,
            method,
            move |py| (polled.clone_ref(py), POLL_SECONDS).into_pyobject(py),
            read,
        )
        .await?;
        if let Some(ended) = answer {
            return Ok(ended);
        }
    }
}

/// How a polled task ended: its kind (`done`, `lost`, `failed`, or
/// `unstarted`: queued again, see `batches`), its text
/// (the report, or why), the resulting state's bytes if they came, and the
/// runs of it that were cut short and ran again (a supervisor that died
/// under them): runs and lost work, not preemptions.
struct Ended {
    kind: String,
    text: String,
    state: Option<Vec<u8>>,
    cut_short: u64,
}

impl Ended {
    /// A task that failed before its iterations could say so: `why`.
    fn failed(why: String) -> Ended {
        Ended {
            kind: "failed".to_owned(),
            text: why,
            state: None,
            cut_short: 0,
        }
    }
}

/// Reads what `Dispatcher.poll` answers: `None`, or `(kind, text)`,
/// `(kind, text, state bytes)` or `(kind, text, state bytes, cut short)`.
fn read_polled(answer: Bound<'_, PyAny>) -> PyResult<Option<Ended>> {
    if answer.is_none() {
        return Ok(None);
    }
    let len = answer.len()?;
    let state = if len >= 3 {
        let bytes = answer.get_item(2)?;
        if bytes.is_none() {
            None
        } else {
            Some(bytes.cast_into::<PyBytes>()?.as_bytes().to_vec())
        }
    } else {
        None
    };
    Ok(Some(Ended {
        kind: answer.get_item(0)?.extract()?,
        text: answer.get_item(1)?.extract()?,
        state,
        cut_short: if len >= 4 {
            answer.get_item(3)?.extract()?
        } else {
            0
        },
    }))
}

/// A remote run that failed before it could say so itself.
fn failed(message: String) -> JobOutcome {
    JobOutcome::Remote(RemoteOutput::failed(RunError::Failed(message), 0.0))
}

#[async_trait]
impl ExecutionBackend for RayBackend {
    fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::Relaxed)
    }

    fn batch(&self) -> u64 {
        BATCH
    }

    async fn execute(&self, _worker: WorkerId, job: Job) -> JobOutcome {
        // Only this process has the input (a repeat's chained state).
        if job.spec().input.is_none() {
            return job.run_here().await;
        }
        let spec = job.into_spec();
        let json = match serde_json::to_string(&spec) {
            Ok(json) => json,
            Err(e) => return failed(format!("the job cannot be sent to Ray: {e}")),
        };
        let ended = self
            .batches
            .queue(Arc::clone(&spec.op), spec.runs_at_once, json)
            .await;
        let Ok(Ended {
            kind,
            text,
            state,
            cut_short,
        }) = ended
        else {
            return failed("the iteration's Ray task ended without an outcome".to_owned());
        };
        let mut output = match kind.as_str() {
            "done" => match serde_json::from_str::<RemoteReport>(&text)
                .map_err(|e| e.to_string())
                .and_then(|report| report.into_output(state).map_err(|e| e.to_string()))
            {
                Ok(output) => output,
                Err(e) => return failed(format!("the Ray task's report is unreadable: {e}")),
            },
            "lost" => {
                self.notes.write(&format!(
                    "pragma: iteration {} of {} was lost on the Ray cluster and runs again: {text}",
                    spec.iteration, spec.op
                ));
                return JobOutcome::Lost;
            }
            _ => RemoteOutput::failed(RunError::Failed(text), 0.0),
        };
        // Runs of it a dead supervisor cut short: runs and lost work, not
        // preemptions.
        output.lost_runs += cut_short;
        JobOutcome::Remote(output)
    }
}

/// The kernel's worker interpreters as Ray actors of one CPU
/// (`pragma_notebook.ray_backend._Worker`): what runs in the kernel's
/// workers with the local backend (a `repeat`'s iterations, whose state
/// stays in the worker's memory between them, and is pickled only at
/// checkpoints) runs on the cluster. An actor idle and holding no state
/// for [`WORKER_LINGER`] is let go, so that its CPU is the cluster's again.
pub(crate) struct RayWorkers {
    dispatcher: Arc<Py<PyAny>>,
}

/// How long an idle worker actor holding no state is kept.
const WORKER_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

impl RayWorkers {
    pub(crate) fn new(dispatcher: Py<PyAny>) -> RayWorkers {
        RayWorkers {
            dispatcher: Arc::new(dispatcher),
        }
    }
}

#[async_trait]
impl WorkerSpawner for RayWorkers {
    async fn start(&self, _config: &WorkerConfig) -> Result<Box<dyn WorkerChannel>, WorkerError> {
        let actor: Py<PyAny> = call_dispatcher(&self.dispatcher, "start_worker", |py| {
            Ok(pyo3::types::PyTuple::empty(py))
        })
        .await
        .map_err(WorkerError::StartOnCluster)?;
        Ok(Box::new(RayChannel {
            dispatcher: Arc::clone(&self.dispatcher),
            actor: Some(Arc::new(actor)),
        }))
    }

    fn linger(&self) -> Option<std::time::Duration> {
        Some(WORKER_LINGER)
    }
}

/// A worker actor, spoken to through actor calls; killed when dropped.
struct RayChannel {
    dispatcher: Arc<Py<PyAny>>,
    actor: Option<Arc<Py<PyAny>>>,
}

#[async_trait]
impl WorkerChannel for RayChannel {
    async fn exchange(
        &mut self,
        header: &serde_json::Value,
        blobs: &[&[u8]],
    ) -> io::Result<(serde_json::Value, Vec<Vec<u8>>)> {
        let Some(actor) = self.actor.clone() else {
            return Err(io::Error::other("the worker actor was stopped"));
        };
        let header = header.to_string();
        let blobs: Vec<Vec<u8>> = blobs.iter().map(|b| b.to_vec()).collect();
        let call: Py<PyAny> = call_dispatcher(&self.dispatcher, "call_worker", move |py| {
            let blobs: Vec<Bound<'_, PyBytes>> =
                blobs.iter().map(|b| PyBytes::new(py, b)).collect();
            (actor.clone_ref(py), header, blobs).into_pyobject(py)
        })
        .await
        .map_err(io::Error::other)?;
        let call = Arc::new(call);
        let (answer, blobs) =
            poll_until_ended(&self.dispatcher, "poll_worker", &call, read_worker_answer)
                .await
                .map_err(io::Error::other)?;
        let answer = serde_json::from_str(&answer).map_err(io::Error::other)?;
        Ok((answer, blobs))
    }

    fn kill(&mut self) {
        if let Some(actor) = self.actor.take() {
            stop_off_thread(&self.dispatcher, "kill_worker", actor, "a Ray worker actor");
        }
    }

    async fn ended(&mut self) -> Option<String> {
        // The failed call said why.
        None
    }
}

impl Drop for RayChannel {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Stops `what` (a task, a worker actor; named `named` in a message if it
/// cannot be) with the dispatcher's `method`, off the async thread: that
/// takes the interpreter's lock.
fn stop_off_thread(
    dispatcher: &Arc<Py<PyAny>>,
    method: &'static str,
    what: Arc<Py<PyAny>>,
    named: &'static str,
) {
    let dispatcher = Arc::clone(dispatcher);
    std::thread::spawn(move || {
        Python::attach(|py| {
            if let Err(e) = dispatcher.call_method1(py, method, (what.clone_ref(py),)) {
                eprintln!("pragma: {named} could not be stopped: {e}");
            }
        })
    });
}

/// Reads what `Dispatcher.poll_worker` answers: `None` while the call
/// runs, else the answer's header (JSON) and blobs.
fn read_worker_answer(answer: Bound<'_, PyAny>) -> PyResult<Option<(String, Vec<Vec<u8>>)>> {
    if answer.is_none() {
        return Ok(None);
    }
    let header: String = answer.get_item(0)?.extract()?;
    let mut blobs = Vec::new();
    for blob in answer.get_item(1)?.try_iter()? {
        blobs.push(blob?.cast_into::<PyBytes>()?.as_bytes().to_vec());
    }
    Ok(Some((header, blobs)))
}

/// This interpreter (a Ray worker's), answering the requests of
/// `pragma_notebook.worker` in place: what the host of a Ray task runs its
/// body in ([`PythonHost::here`]). It answers on the thread that asks,
/// blocking it: only for a job driven by [`run_remote_job`]'s `block_on`,
/// on the task's own thread.
#[derive(Debug)]
pub(crate) struct ThisInterpreter;

#[async_trait]
impl InterpreterHere for ThisInterpreter {
    async fn call(
        &self,
        header: serde_json::Value,
        blobs: Vec<Vec<u8>>,
    ) -> Result<(serde_json::Value, Vec<Vec<u8>>), String> {
        // On this thread, which `run_remote_job` let go of the interpreter
        // on to drive the job (`block_on`): the interpreter answers at
        // once, without a hop to a blocking thread and back, twice an
        // iteration, which cost more than a short body's run.
        Python::attach(|py| -> PyResult<(String, Vec<Vec<u8>>)> {
            let worker = py.import("pragma_notebook.worker")?;
            let blobs: Vec<Bound<'_, PyBytes>> =
                blobs.iter().map(|b| PyBytes::new(py, b)).collect();
            worker
                .call_method1("handle_here", (header.to_string(), blobs))?
                .extract()
        })
        .map_err(|e| e.to_string())
        .and_then(|(answer, blobs)| {
            serde_json::from_str(&answer)
                .map(|answer| (answer, blobs))
                .map_err(|e| e.to_string())
        })
    }
}

/// The runtime and the opened stores of this process (a Ray worker runs
/// many tasks; each store is opened once).
fn remote_runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn opened_store(store: &str) -> Result<StoreLocation, String> {
    static STORES: OnceLock<Mutex<HashMap<String, StoreLocation>>> = OnceLock::new();
    let stores = STORES.get_or_init(Mutex::default);
    if let Some(location) = stores.lock().ok().and_then(|s| s.get(store).cloned()) {
        return Ok(location);
    }
    let location = store
        .parse()
        .and_then(|spec| StoreLocation::existing(&spec))
        .map_err(|e| e.to_string())?;
    if let Ok(mut stores) = stores.lock() {
        stores.insert(store.to_owned(), location.clone());
    }
    Ok(location)
}

/// This machine's name, for messages.
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "this node".to_owned())
}

/// The input state this process restored last, with where it is and when
/// it was last used: the iterations of an operation share their input, so
/// a process reads it from the store once (a committed state never
/// changes). A Ray worker process outlives the operation, so the state is
/// dropped once unused for [`KEEP_INPUT`]: a model of some gigabytes is
/// not held by an idle worker.
struct KeptInput {
    key: (String, Arc<str>, StateRef),
    state: Namespace,
    used: std::time::Instant,
}

/// How long an input state no job asks for stays in a worker's memory.
const KEEP_INPUT: std::time::Duration = std::time::Duration::from_secs(10);

fn kept_input() -> &'static Mutex<Option<KeptInput>> {
    static KEPT: OnceLock<Mutex<Option<KeptInput>>> = OnceLock::new();
    KEPT.get_or_init(|| {
        // Drops the state once unused for long enough.
        std::thread::Builder::new()
            .name("pragma kept input".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(KEEP_INPUT / 2);
                    if let Ok(mut kept) = kept_input().lock()
                        && kept.as_ref().is_some_and(|k| k.used.elapsed() > KEEP_INPUT)
                    {
                        *kept = None;
                    }
                }
            })
            .ok();
        Mutex::default()
    })
}

/// `spec`'s input state: the one kept, if it is that, else restored from
/// `location` (and kept in its place).
async fn input_of(
    host: &PythonHost,
    location: &StoreLocation,
    store: &str,
    spec: &JobSpec,
) -> Result<Namespace, InputError> {
    let key = spec
        .input
        .as_ref()
        .map(|input| (store.to_owned(), Arc::clone(&spec.op), input.clone()));
    if let Some(key) = &key
        && let Ok(mut kept) = kept_input().lock()
        && let Some(kept) = kept.as_mut()
        && kept.key == *key
    {
        kept.used = std::time::Instant::now();
        return Ok(kept.state.clone());
    }
    let log = CheckpointLog::new(Arc::clone(&location.checkpoints));
    let state = load_input(host, &log, spec).await?;
    if let (Some(key), Ok(mut kept)) = (key, kept_input().lock()) {
        *kept = Some(KeptInput {
            key,
            state: state.clone(),
            used: std::time::Instant::now(),
        });
    }
    Ok(state)
}

/// What a job is, whichever start of it (`spec`, the job's JSON): its
/// operation, iteration and input; the kernel keys the jobs it follows
/// by it. Read here, where the spec's form is defined, not in Python.
#[pyfunction]
pub(crate) fn job_key(spec: &str) -> PyResult<String> {
    let spec: JobSpec = serde_json::from_str(spec)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("a job spec: {e}")))?;
    let input = serde_json::to_string(&spec.input)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("a job spec: {e}")))?;
    Ok(format!("{}/{}/{input}", spec.op, spec.iteration))
}

/// Runs the job `spec` (JSON) against the store `store` in this process,
/// a Ray worker: restores its input state, runs the body and the selection
/// expression here, and returns the report (JSON) the kernel reads with
/// the resulting state's snapshot (bytes), if there is one. A store this
/// node cannot reach fails the iteration with a message naming it.
#[pyfunction]
pub(crate) fn run_remote_job<'py>(
    py: Python<'py>,
    spec: &str,
    store: &str,
) -> PyResult<(String, Option<Bound<'py, PyBytes>>)> {
    let spec: JobSpec = serde_json::from_str(spec)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("a job spec: {e}")))?;
    let runtime = remote_runtime().map_err(pyo3::exceptions::PyRuntimeError::new_err)?;
    let mut output = py.detach(|| {
        runtime.block_on(async {
            let begin = std::time::Instant::now();
            let unreachable = |e: String| {
                RemoteOutput::failed(
                    RunError::Failed(format!(
                        "the store `{store}` cannot be reached from {}: {e} (every Ray node \
                         must reach it: a shared directory, or an s3:// store)",
                        node_name()
                    )),
                    begin.elapsed().as_secs_f64(),
                )
            };
            let location = match opened_store(store) {
                Ok(location) => location,
                Err(e) => return unreachable(e),
            };
            // Run logs only where the kernel reads them too: beside a
            // shared directory store.
            let host = PythonHost::here(Arc::new(ThisInterpreter));
            let host = if location.spec.is_directory() {
                host.with_logs(location.logs())
            } else {
                host
            };
            let input = match input_of(&host, &location, store, &spec).await {
                // An input this node cannot read names the store.
                Err(InputError::Unreadable(e)) => return unreachable(e.to_string()),
                input => input.map_err(RunError::from),
            };
            let mut output = run_spec_returning(&host, input, &spec).await;
            // The worker's time on it includes reading its input.
            output.seconds = begin.elapsed().as_secs_f64();
            output
        })
    });
    // Its namespace, kept for its scoring, is let go of with the job.
    py.import("pragma_notebook.worker")?
        .call_method0("forget_here")?;
    let state = match &mut output.result {
        Ok(RemoteState::Returned(bytes)) => Some(PyBytes::new(py, &std::mem::take(bytes))),
        _ => None,
    };
    let report = serde_json::to_string(&RemoteReport::from(&output))
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
    Ok((report, state))
}

/// Runs the executor's `ExecutionBackend` conformance suite against a Ray
/// backend on `dispatcher`; the problem found, if any (feature
/// `test-checks`: for the package's tests only).
#[cfg(feature = "test-checks")]
#[pyfunction]
pub(crate) fn ray_backend_conformance(
    py: Python<'_>,
    dispatcher: Py<PyAny>,
    capacity: u64,
    store: String,
) -> PyResult<Option<String>> {
    let backend = RayBackend::new(dispatcher, capacity, store, false, Notes::default());
    let runtime = remote_runtime().map_err(pyo3::exceptions::PyRuntimeError::new_err)?;
    let found =
        py.detach(|| runtime.block_on(pragma_executor_local::conformance::backend(&backend)));
    Ok(found.err().map(|e| e.to_string()))
}
