//! Where an operation's files live: `--store DIR` or `--store
//! s3://bucket/prefix`, opened as every host opens a store
//! (`pragma_session::StoreLocation`), with the shell host's working copies
//! under `work/` of its local directory.

use std::sync::Arc;

use pragma_checkpoint::Store;
use pragma_executor_local::{Config, Executor};
use pragma_session::{JobQueue, Session, StoreLocation, StoreSpec};

use crate::shell::ShellHost;

/// The checkpoint store every operation of a location uses.
pub(crate) type Checkpoints = Arc<dyn Store>;

/// The executor the command builds on a location.
pub(crate) type ShellExecutor = Executor<ShellHost, Checkpoints>;

/// The operation lifecycle the command runs on a location.
pub(crate) type ShellSession = Session<ShellHost, Checkpoints>;

/// An opened `--store`: the store every host opens (its checkpoints, its
/// local directory, its records and logs), and what the command builds on
/// it.
#[derive(Debug, Clone)]
pub(crate) struct Location(StoreLocation);

impl std::ops::Deref for Location {
    type Target = StoreLocation;

    fn deref(&self) -> &StoreLocation {
        &self.0
    }
}

impl Location {
    /// Opens (creating if need be) the store that `spec` names.
    pub(crate) fn open(spec: &StoreSpec) -> Result<Location, String> {
        Ok(Location(
            StoreLocation::open(spec).map_err(|e| e.to_string())?,
        ))
    }

    /// Opens an existing store, for the commands that only read one.
    pub(crate) fn existing(spec: &StoreSpec) -> Result<Location, String> {
        Ok(Location(
            StoreLocation::existing(spec).map_err(|e| e.to_string())?,
        ))
    }

    /// The host for shell cells, with its working copies and logs here.
    pub(crate) fn host(&self) -> Result<ShellHost, String> {
        ShellHost::new(self.local.join("work"), self.logs())
            .map_err(|e| format!("cannot use the store `{}`: {e}", self.spec))
    }

    /// An executor on this location.
    pub(crate) fn executor(&self, host: ShellHost, config: Config) -> ShellExecutor {
        Executor::new(host, self.checkpoints.clone(), config)
    }

    /// The lifecycle of operations on this location, on `executor`.
    pub(crate) fn session(&self, executor: ShellExecutor) -> ShellSession {
        Session::new(executor, self.records()).with_job_queue(Arc::new(SlurmJobs))
    }

    /// `--store X` when X is not the default, for suggested commands.
    pub(crate) fn store_flag(&self) -> String {
        if self.spec == StoreSpec::Directory(".pragma".into()) {
            String::new()
        } else {
            format!(" --store {}", pragma_parse::quote(&self.spec.to_string()))
        }
    }
}

/// SLURM as the lifecycle asks it whether a runner that is a job still
/// runs.
pub(crate) struct SlurmJobs;

impl JobQueue for SlurmJobs {
    fn name(&self) -> &str {
        "SLURM"
    }

    fn queued(&self, job: &str) -> Option<bool> {
        pragma_executor_slurm::job_queued(job)
    }
}
