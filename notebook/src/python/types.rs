//! What crosses the boundary between the kernel's Python and the
//! extension: values handed back as frozen classes with typed attributes,
//! arguments taken as structs (read from the attributes of the Python
//! objects `pragma_notebook.native_args` builds), and the exceptions the
//! extension raises.

use pragma_session::Summary;
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

create_exception!(
    _native,
    UnknownOperation,
    PyValueError,
    "The operation is not one of this kernel's."
);
create_exception!(
    _native,
    NotEnded,
    PyValueError,
    "The operation has not ended, or it was finished already."
);
create_exception!(
    _native,
    OperationError,
    pyo3::exceptions::PyRuntimeError,
    "An operation could not be started, resumed, extended or applied: what failed, on what."
);
create_exception!(
    _native,
    AlreadyRunning,
    OperationError,
    "The same cell on the same variables runs already, in another kernel or process."
);
create_exception!(
    _native,
    StoreError,
    PyValueError,
    "The store cannot be used as given: what is wrong, and what to write instead."
);

/// Where an operation stands (`NativeSession.status`).
#[pyclass(module = "pragma_notebook._native", frozen, get_all)]
#[derive(Debug)]
pub(crate) struct OperationProgress {
    /// Iterations finished for good (a repeat's: covered by a checkpoint).
    pub(crate) done: u64,
    /// Iterations that ran through, kept or not yet (a repeat's since its
    /// last checkpoint too): what a progress bar counts.
    pub(crate) finished: u64,
    /// Iterations abandoned after their retries.
    pub(crate) failed: u64,
    /// Where it is: `queued`, `running`, `suspended` or `ended`.
    pub(crate) phase: &'static str,
    /// The iterations the operation has.
    pub(crate) total: u64,
    /// Iterations running now.
    pub(crate) in_flight: u64,
    /// The best iteration so far, if one was scored.
    pub(crate) best_iteration: Option<u64>,
    /// Its score.
    pub(crate) best_score: Option<f64>,
    /// Whether the operation ended.
    pub(crate) ended: bool,
}

/// A `#pragma` cell, parsed once (`parse_cell`): what Python checks
/// before anything runs, and what `NativeSession.submit` starts.
#[pyclass(module = "pragma_notebook._native", frozen)]
#[derive(Debug)]
pub(crate) struct ParsedCell {
    /// The cell.
    pub(crate) cell: pragma_parse::ParsedCell,
    /// Its name in messages (`In[3]`).
    pub(crate) name: String,
}

#[pymethods]
impl ParsedCell {
    /// The selection expression (`None` for `async`).
    #[getter]
    fn expr(&self) -> Option<&str> {
        self.cell.directive().select().map(|s| s.expr())
    }

    /// The body: the cell after its directive and `#pragma readonly` lines.
    #[getter]
    fn body(&self) -> &str {
        self.cell.body()
    }

    /// The names the `#pragma readonly` lines give.
    #[getter]
    fn readonly(&self) -> Vec<String> {
        self.cell.readonly().to_vec()
    }

    /// Its name in messages.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }
}

/// What an operation consumed.
#[pyclass(
    module = "pragma_notebook._native",
    frozen,
    get_all,
    skip_from_py_object
)]
#[derive(Debug, Clone)]
pub(crate) struct OperationUsage {
    /// Time workers spent on its iterations, in seconds.
    pub(crate) worker_seconds: f64,
    /// Iteration starts, retries and re-runs included.
    pub(crate) iterations_run: u64,
    /// Iterations whose work was lost to preemption or crashes.
    pub(crate) work_lost: u64,
    /// Bytes written to checkpoints.
    pub(crate) bytes_checkpointed: u64,
}

/// An iteration that failed for good, with its last error.
#[pyclass(
    module = "pragma_notebook._native",
    frozen,
    get_all,
    skip_from_py_object
)]
#[derive(Debug, Clone)]
pub(crate) struct FailedIteration {
    /// The iteration.
    pub(crate) iteration: u64,
    /// Its last error.
    pub(crate) error: String,
}

/// What `NativeSession.submit` did: the operation, and how it runs.
#[pyclass(module = "pragma_notebook._native", frozen, get_all)]
#[derive(Debug)]
pub(crate) struct Submitted {
    /// The operation.
    pub(crate) op: String,
    /// `started`, `resumed` (an interrupted run of the same cell went on
    /// from its checkpoint) or `running` (this kernel runs that cell
    /// already: nothing new started).
    pub(crate) how: &'static str,
}

/// What `NativeSession.finish` did: how the operation ended, and the
/// variables it applied.
#[pyclass(module = "pragma_notebook._native", frozen, get_all)]
#[derive(Debug)]
pub(crate) struct Finished {
    /// How it ended.
    pub(crate) summary: OperationSummary,
    /// The variables applied.
    pub(crate) applied: Vec<String>,
}

/// What `NativeSession.apply_kept` did: the operation's summary once
/// nothing is left to settle (`None` while conflicts remain), and the
/// variables it applied.
#[pyclass(module = "pragma_notebook._native", frozen, get_all)]
#[derive(Debug)]
pub(crate) struct Settled {
    /// How it ended, once settled.
    pub(crate) summary: Option<OperationSummary>,
    /// The variables applied.
    pub(crate) applied: Vec<String>,
}

/// How an operation ended and what was applied: its summary
/// (`NativeSession.finish`, `apply_kept`).
#[pyclass(
    module = "pragma_notebook._native",
    frozen,
    get_all,
    skip_from_py_object
)]
#[derive(Debug, Clone)]
pub(crate) struct OperationSummary {
    /// The operation.
    pub(crate) op: String,
    /// `succeeded`, `failed`, `cancelled`, `interrupted` or `stopped`.
    pub(crate) status: String,
    /// Why it failed or stopped; for an interrupted one, the iteration and
    /// what it asked (`iteration 0: input() was called`).
    pub(crate) reason: Option<String>,
    /// The best iteration, if there is one.
    pub(crate) best_iteration: Option<u64>,
    /// Its score.
    pub(crate) best_score: Option<f64>,
    /// Variables changed both by the operation and live, left unapplied.
    pub(crate) conflicts: Vec<String>,
    /// Iterations that failed for good, each with its last error.
    pub(crate) failed_iterations: Vec<FailedIteration>,
    /// What it consumed.
    pub(crate) usage: OperationUsage,
    /// Why the result could not be applied, if it could not.
    pub(crate) apply_error: Option<String>,
    /// Why a stop rule (`--patience`, `--target`) ended it early, if one did.
    pub(crate) stopped_early: Option<String>,
}

impl From<&Summary> for OperationSummary {
    fn from(summary: &Summary) -> OperationSummary {
        let usage = summary.usage;
        OperationSummary {
            op: summary.op.clone(),
            status: summary.status.name().to_owned(),
            reason: summary.reason(),
            best_iteration: summary.best.map(|best| best.iteration),
            best_score: summary.best.and_then(|best| best.score),
            conflicts: summary.conflicts.clone(),
            failed_iterations: summary
                .failed_iterations
                .iter()
                .map(|failed| FailedIteration {
                    iteration: failed.iteration,
                    error: failed.error.clone(),
                })
                .collect(),
            usage: OperationUsage {
                worker_seconds: usage.worker_seconds,
                iterations_run: usage.iterations_run,
                work_lost: usage.work_lost,
                bytes_checkpointed: usage.bytes_checkpointed,
            },
            apply_error: summary.apply_error.clone(),
            stopped_early: summary.stopped_early.clone(),
        }
    }
}

/// The kernel's variables, saved (`native_args.SavedNamespace`): what a
/// submission runs on, and what a result is compared with and applied to.
#[derive(Debug, FromPyObject)]
pub(crate) struct SavedNamespace {
    /// The notebook's identity (its operations resume after a restart).
    pub(crate) identity: String,
    /// The variables' names.
    pub(crate) names: Vec<String>,
    /// Their saved values, in the same order.
    pub(crate) blobs: Vec<Vec<u8>>,
}

/// How conflicts are settled (`native_args.Settling`).
#[derive(Debug, FromPyObject)]
pub(crate) struct Settling {
    /// `ask`, `take-background` or `keep-live`.
    pub(crate) rule: String,
    /// Variables that take the operation's value.
    pub(crate) take_background: Vec<String>,
    /// Variables that keep the notebook's.
    pub(crate) keep_live: Vec<String>,
}

/// How a kernel's session is made (`native_args.SessionOptions`).
#[derive(Debug, FromPyObject)]
pub(crate) struct SessionOptions {
    /// A directory, or `s3://BUCKET/PREFIX`.
    pub(crate) store: String,
    /// The interpreter workers run.
    pub(crate) python: String,
    /// Where workers import this package from.
    pub(crate) python_path: Vec<String>,
    /// The most worker interpreters (with Ray: iterations at once).
    pub(crate) workers: usize,
    /// A `pragma_notebook.ray_backend.Dispatcher`, to run on Ray.
    pub(crate) ray: Option<Py<PyAny>>,
    /// With Ray: follow the cluster's CPUs as it grows and shrinks.
    pub(crate) follow_cluster: bool,
    /// Re-runs of an iteration whose body raised.
    pub(crate) retries: u32,
}
