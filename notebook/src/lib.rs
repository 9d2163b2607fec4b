//! The notebook host's core: `#pragma repeat|parallel|async` cells on a
//! Python namespace, each iteration run in a pool of persistent worker
//! interpreters.
//!
//! - [`WorkerPool`] starts up to [`WorkerConfig::size`] workers
//!   (`python -m pragma_notebook.worker`, from `notebook/python/`) when
//!   first needed and keeps them: a body's imports are paid once per
//!   worker, not once per iteration.
//! - [`PythonHost`] is the executor's [`Host`](pragma_executor_local::Host)
//!   for Python: the state is a [`Namespace`], the notebook's variables
//!   as one object graph saved variable by variable (cloudpickle, with
//!   shared objects and the functions' globals kept as references;
//!   modules by name). A run sends the namespace, the body, the
//!   iteration variable and the seed to a worker, which runs the body as
//!   the kernel would (`__main__`, its working directory, `sys.path` and
//!   environment at submission), seeds `random`
//!   (and numpy's global generator, where numpy is installed), runs the
//!   body with `input()`, `getpass()` and `sys.stdin` stopping it as
//!   interactive input, and sends back every variable, or names those that
//!   cannot be saved. The selection expression is evaluated in a worker
//!   too; an exception or NaN makes the candidate invalid.
//! - A worker that dies (killed, out of memory) fails its iteration, which
//!   runs again within the retry budget; a new worker takes its place. A
//!   cancelled run stops its worker.
//! - What a run prints, and what C code and subprocesses write to file
//!   descriptors 1 and 2 while its body runs, comes back with its answer
//!   (kept as the run's logs: [`PythonHost::with_logs`]); what a worker
//!   writes outside its runs (imports, start-up) goes to a log of its own
//!   under [`WorkerConfig::logs`], never to this process's output (in a
//!   Jupyter kernel, whatever cell runs at the time).
//!
//! The IPython extension (`%load_ext pragma_notebook`), which captures the
//! kernel's namespace and applies results between cells through the
//! `pragma-session` lifecycle, builds on this crate.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use pragma_checkpoint::MemoryStore;
//! use pragma_executor_local::{Config, Executor};
//! use pragma_notebook::{Namespace, PythonHost, WorkerConfig, WorkerPool};
//!
//! let mut workers = WorkerConfig::new("python3");
//! workers.python_path.push("notebook/python".into());
//! let host = PythonHost::new(WorkerPool::new(workers));
//! let executor = Executor::new(host, MemoryStore::new(), Config::default());
//! let cell = "#pragma repeat --iterations 5 --max-by x\nx = iteration * 2";
//! let outcome = executor.submit(cell, Namespace::new()).await?.wait().await?;
//! println!("{:?}", outcome.best.map(|b| b.iteration));
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

#[cfg(feature = "python")]
mod bucket;
mod host;
mod pool;
#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
mod ray;

pub use host::{Namespace, PythonHost};
pub use pool::{WorkerConfig, WorkerError, WorkerPool};
