//! The command's own records of an operation, beside the checkpoints:
//! `ops/OP/run.json` (what was submitted, and which process runs it),
//! `ops/OP/events.jsonl` (its events, for `pragma wait`), `ops/OP/outcome.json`
//! (how it ended, and what is left to apply) and `ops/OP/result/` (the best
//! state, kept until it is applied).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::location::Location;

/// File digests by relative path: what the conflict check compares.
pub(crate) type Digests = BTreeMap<String, (u64, u32)>;

/// What was submitted, and which process runs it now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunRecord {
    /// The operation.
    pub(crate) op: String,
    /// The cell file, as given.
    pub(crate) cell: PathBuf,
    /// The live state directory, absolute.
    pub(crate) state: PathBuf,
    /// File digests of the state at submission.
    pub(crate) submitted: Digests,
    /// The process running the operation now.
    pub(crate) runner: Option<Runner>,
}

/// A running process, told apart from a later one with the same pid, and
/// where it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Runner {
    /// Its process id.
    pub(crate) pid: u32,
    /// Its start time, in clock ticks since boot (`/proc/PID/stat`).
    pub(crate) started: u64,
    /// The machine it runs on (`None` in records of older versions: this
    /// one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) host: Option<String>,
    /// The SLURM job it runs in, for a repeat operation run as one job
    /// (`--backend slurm`): the job, not the process, is what to follow
    /// and cancel, from any machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) slurm_job: Option<String>,
}

impl Runner {
    /// This process, in the SLURM job `slurm_job` if it runs one.
    pub(crate) fn current(slurm_job: Option<String>) -> Option<Runner> {
        let pid = std::process::id();
        Some(Runner {
            pid,
            started: crate::procfs::stat(pid)?.started,
            host: Some(this_host()),
            slurm_job,
        })
    }

    /// Whether it runs on this machine.
    pub(crate) fn here(&self) -> bool {
        self.host.as_deref().is_none_or(|host| host == this_host())
    }

    /// Whether the operation still runs: its SLURM job is queued (a
    /// requeued job waits to start again), or its process runs and is
    /// not a zombie. A process on another machine is taken to run: from
    /// here that cannot be told, and starting the operation again beside
    /// it would run it twice.
    pub(crate) fn alive(&self) -> bool {
        if let Some(job) = &self.slurm_job
            && let Some(queued) = pragma_executor_slurm::job_queued(job)
        {
            return queued;
        }
        if !self.here() {
            return true;
        }
        crate::procfs::stat(self.pid).is_some_and(|s| !s.zombie && s.started == self.started)
    }

    /// What runs the operation, for messages: `process 42`, `process 42 on
    /// node7`, `SLURM job 1234`.
    pub(crate) fn describe(&self) -> String {
        match (&self.slurm_job, &self.host) {
            (Some(job), _) => format!("SLURM job {job}"),
            (None, Some(host)) if !self.here() => format!("process {} on {host}", self.pid),
            _ => format!("process {}", self.pid),
        }
    }
}

/// This machine's name.
pub(crate) fn this_host() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Checks an operation id given on the command line before it becomes a
/// path.
pub(crate) fn check_op(op: &str) -> Result<(), String> {
    let fine = !op.is_empty()
        && op
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if fine {
        Ok(())
    } else {
        Err(format!(
            "`{op}` is not an operation id; ids look like op-0123abcd…, and `pragma status` lists them"
        ))
    }
}

/// Writes `bytes` to `path` whole or not at all.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut temporary = tempfile::NamedTempFile::new_in(path.parent().unwrap_or(Path::new(".")))?;
    temporary.write_all(bytes)?;
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|e| e.error)?;
    Ok(())
}

impl Location {
    /// The record of `op`, if the command has one.
    pub(crate) fn read_run(&self, op: &str) -> Option<RunRecord> {
        let bytes = std::fs::read(self.op_dir(op).join("run.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Saves the record of an operation.
    pub(crate) fn write_run(&self, record: &RunRecord) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        write_atomically(&self.op_dir(&record.op).join("run.json"), &bytes)
    }

    /// How `op` ended, as the `finished` line of `pragma run --json`.
    pub(crate) fn read_outcome(&self, op: &str) -> Option<serde_json::Value> {
        let bytes = std::fs::read(self.op_dir(op).join("outcome.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Saves how `op` ended.
    pub(crate) fn write_outcome(
        &self,
        op: &str,
        outcome: &serde_json::Value,
    ) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(outcome).map_err(std::io::Error::other)?;
        write_atomically(&self.op_dir(op).join("outcome.json"), &bytes)
    }

    /// Where the best state of `op` waits to be applied.
    pub(crate) fn result_dir(&self, op: &str) -> PathBuf {
        self.op_dir(op).join("result")
    }

    /// The event log of `op`.
    pub(crate) fn events_path(&self, op: &str) -> PathBuf {
        self.op_dir(op).join("events.jsonl")
    }
}
