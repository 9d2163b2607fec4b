//! `--backend slurm`: iterations run as SLURM jobs, through the shared
//! store; and `pragma __slurm-task DIR`, what each job runs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pragma_checkpoint::{CheckpointLog, Key};
use pragma_executor_local::{RemoteReport, run_spec};
use pragma_executor_slurm::{SlurmBackend, SlurmConfig, task_files, write_report};
use pragma_parse::Directive;
use serde::{Deserialize, Serialize};

use crate::exit;
use crate::location::Location;
use crate::run::RunArgs;

/// What a task needs to open the store where it runs.
#[derive(Debug, Serialize, Deserialize)]
struct WorkerSetup {
    /// The `--store` value, absolute if it is a directory.
    store: String,
    /// The directory `pragma run` ran in (an S3 store's local files are
    /// relative to it).
    cwd: std::path::PathBuf,
}

/// The backend for `args`, or why there is none.
pub(crate) fn backend(
    args: &RunArgs,
    location: &Location,
    directive: &Directive,
    workers: u64,
) -> Result<Arc<SlurmBackend>, String> {
    if matches!(directive, Directive::Repeat(_)) {
        return Err(
            "`#pragma repeat` cannot run on SLURM yet (each iteration needs the previous one's state); \
             run it with the local backend, or use a parallel cell"
                .to_owned(),
        );
    }
    let cwd = std::env::current_dir().map_err(|e| format!("the current directory: {e}"))?;
    let store = if args.store.contains("://") {
        args.store.clone()
    } else {
        std::path::absolute(&args.store)
            .map_err(|e| format!("the store `{}`: {e}", args.store))?
            .to_string_lossy()
            .into_owned()
    };
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the pragma executable: {e}"))?;
    let shared_dir = std::path::absolute(location.local.join("slurm"))
        .map_err(|e| format!("the store `{}`: {e}", args.store))?;
    // The array runs no more at once than the executor would.
    let workers = match directive {
        Directive::Parallel(parallel) => {
            parallel.parallel_runs().map_or(workers, |p| p.min(workers))
        }
        _ => workers,
    };
    let config = SlurmConfig {
        workers,
        shared_dir,
        worker_command: vec![exe.into(), "__slurm-task".into()],
        partition: args.partition.clone(),
        sbatch_args: args.sbatch_args.clone(),
        poll: Duration::from_millis(200),
    };
    let setup = serde_json::to_value(WorkerSetup { store, cwd }).map_err(|e| e.to_string())?;
    let backend = SlurmBackend::new(config).map_err(|e| {
        format!(
            "cannot use SLURM: {e}; the store `{}` must also be reachable from every node \
             (a shared directory, or an s3:// URL)",
            args.store
        )
    })?;
    Ok(Arc::new(backend.with_setup(setup)))
}

/// `pragma __slurm-task DIR`: runs the iteration a SLURM job stands for.
pub(crate) fn task(dir: &Path) -> u8 {
    let files = match task_files(dir) {
        Ok(Some(files)) => files,
        // Done already (a requeued task): nothing runs twice.
        Ok(None) => return exit::OK,
        Err(e) => {
            eprintln!("error: the task in `{}`: {e}", dir.display());
            return exit::FAILED;
        }
    };
    let (spec, setup, report_path) = files;
    let setup: WorkerSetup = match serde_json::from_value(setup.worker) {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("error: the task's setup in `{}`: {e}", dir.display());
            return exit::FAILED;
        }
    };
    if let Err(e) = std::env::set_current_dir(&setup.cwd) {
        eprintln!("error: cannot enter `{}`: {e}", setup.cwd.display());
        return exit::FAILED;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return exit::FAILED;
        }
    };
    runtime.block_on(async {
        let location = match Location::open(&setup.store) {
            Ok(location) => location,
            Err(message) => {
                eprintln!("error: {message}");
                return exit::FAILED;
            }
        };
        let host = match location.host() {
            Ok(host) => host,
            Err(message) => {
                eprintln!("error: {message}");
                return exit::FAILED;
            }
        };
        let key = match Key::parse(&format!(
            "remote/{}/{}-{}",
            spec.op, spec.iteration, spec.attempt
        )) {
            Ok(key) => key,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::FAILED;
            }
        };
        let log = CheckpointLog::new(location.checkpoints.clone());
        let output = run_spec(&host, &log, &spec, &key).await;
        match write_report(&report_path, &RemoteReport::from(&output)) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("error: cannot write `{}`: {e}", report_path.display());
                exit::FAILED
            }
        }
    })
}
