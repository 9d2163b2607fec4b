//! The flags of `pragma run` and `pragma submit`, and what they mean to
//! the lifecycle.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use pragma_session::{Rule, Settle, StoreSpec};
use serde::{Deserialize, Serialize};

/// Arguments of `pragma run` and `pragma submit`; `submit` hands them to
/// the detached run as JSON.
#[derive(Args, Clone, Serialize, Deserialize)]
pub(crate) struct RunArgs {
    /// The cell: a `#pragma` line, then a shell script.
    pub(crate) cell: PathBuf,
    /// The state directory; its files are the variables. On success the
    /// best state's changes are applied to it.
    #[arg(long)]
    pub(crate) state: PathBuf,
    /// Where checkpoints, logs and working copies are kept: a directory,
    /// or s3://BUCKET/PREFIX for the checkpoints (credentials and endpoint
    /// from the AWS_* environment variables; the rest then stays in
    /// `.pragma/remote/`).
    #[arg(long, default_value = ".pragma")]
    pub(crate) store: StoreSpec,
    /// Iterations that run at once (default: the number of cores).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) workers: Option<u64>,
    /// Retries of an iteration whose body exits non-zero.
    #[arg(long, default_value_t = 2)]
    pub(crate) retries: u32,
    /// Print events as JSON Lines on standard output.
    #[arg(long)]
    pub(crate) json: bool,
    /// Seconds the iterations running at a preemption notice (SIGTERM)
    /// have to finish before they are stopped; a repeat then checkpoints
    /// its last finished iteration, and the command exits 75, resumable.
    #[arg(long, default_value_t = DEFAULT_GRACE_SECONDS, value_parser = grace_seconds)]
    pub(crate) grace: f64,
    /// Start over instead of resuming an interrupted run.
    #[arg(long)]
    pub(crate) fresh: bool,
    /// Run this many more iterations of the last run of this cell on this
    /// state, which succeeded: a repeat goes on from its last state, a
    /// parallel operation runs its next iterations; the best of all is
    /// applied.
    #[arg(long, value_name = "N", conflicts_with = "fresh",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) extend: Option<u64>,
    /// What to do with files changed both by the run and in the state
    /// directory meanwhile (default: apply nothing of them, exit 3).
    #[arg(long, value_enum)]
    pub(crate) on_conflict: Option<OnConflict>,
    /// Where iterations run: here, or on a SLURM cluster (parallel and
    /// async cells; the store must then be reachable from every node).
    #[arg(long, value_enum, default_value = "local")]
    pub(crate) backend: Backend,
    /// The SLURM partition (with --backend slurm).
    #[arg(long)]
    pub(crate) partition: Option<String>,
    /// One more argument for `sbatch` (with --backend slurm); repeatable.
    #[arg(long = "sbatch-arg", allow_hyphen_values = true)]
    pub(crate) sbatch_args: Vec<String>,
    /// Run detached for `pragma submit` (`pragma __run-detached`),
    /// printing the operation id on standard output once it is submitted.
    #[arg(skip)]
    pub(crate) detached: bool,
    /// The SLURM job this run is, when it runs a repeat operation as one
    /// job (`pragma __slurm-run`): what `cancel`, `wait` and `status` follow.
    #[arg(skip)]
    pub(crate) slurm_job: Option<String>,
}

/// The grace period of a preemption notice when `--grace` is not given:
/// within the 30 s SLURM and Kubernetes wait before they kill.
pub(crate) const DEFAULT_GRACE_SECONDS: f64 = 20.0;

/// A grace period: seconds, from 0 up, finite.
fn grace_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(seconds),
        _ => Err(format!(
            "`{text}` is not a number of seconds from 0 up (e.g. `--grace 20`, `--grace 0.5`)"
        )),
    }
}

/// Where iterations run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub(crate) enum Backend {
    /// In this process's workers.
    Local,
    /// As SLURM jobs: one job array per operation.
    Slurm,
}

/// How to settle conflicts.
#[derive(Clone, Copy, Debug, ValueEnum, Serialize, Deserialize)]
pub(crate) enum OnConflict {
    /// Take the run's version.
    TakeBackground,
    /// Keep the state directory's version.
    KeepLive,
}

/// How `--on-conflict` settles conflicts.
pub(crate) fn settle(on_conflict: Option<OnConflict>) -> Settle {
    match on_conflict {
        Some(OnConflict::TakeBackground) => Settle::by_rule(Rule::TakeBackground),
        Some(OnConflict::KeepLive) => Settle::by_rule(Rule::KeepLive),
        None => Settle::ask(),
    }
}
