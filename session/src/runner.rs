//! Which process runs an operation, and whether it still does: one runner
//! per operation, across processes, machines and batch jobs.

use serde::{Deserialize, Serialize};

/// A batch scheduler that can run a whole operation as one job (SLURM):
/// the job, not the process, is then what runs the operation, from any
/// machine.
pub trait JobQueue: Send + Sync {
    /// The scheduler's name, for messages (`SLURM`).
    fn name(&self) -> &str;

    /// Whether `job` is queued or running (a requeued job waits to start
    /// again); `None` when the scheduler cannot be asked from here.
    fn queued(&self, job: &str) -> Option<bool>;
}

/// A running process, told apart from a later one with the same pid, and
/// where it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runner {
    /// Its process id.
    pub pid: u32,
    /// Its start time, in clock ticks since boot (`/proc/PID/stat`).
    pub started: u64,
    /// The machine it runs on (`None` in records of older versions: this
    /// one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The batch job it runs in, for an operation run as one job: the job
    /// is what to follow and cancel, from any machine.
    #[serde(default, rename = "slurm_job", skip_serializing_if = "Option::is_none")]
    pub batch_job: Option<String>,
}

impl Runner {
    /// This process, in the batch job `batch_job` if it runs one; `None`
    /// where `/proc` cannot tell this process's start time.
    pub fn current(batch_job: Option<String>) -> Option<Runner> {
        let pid = std::process::id();
        Some(Runner {
            pid,
            started: crate::procfs::stat(pid)?.started,
            host: Some(this_host()),
            batch_job,
        })
    }

    /// Whether it runs on this machine.
    pub fn here(&self) -> bool {
        self.host.as_deref().is_none_or(|host| host == this_host())
    }

    /// Whether the operation still runs: its batch job is queued, or its
    /// process runs and is not a zombie. A process on another machine is
    /// taken to run: from here that cannot be told, and starting the
    /// operation again beside it would run it twice.
    pub fn alive(&self, jobs: Option<&dyn JobQueue>) -> bool {
        if let (Some(job), Some(jobs)) = (&self.batch_job, jobs)
            && let Some(queued) = jobs.queued(job)
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
    pub fn describe(&self, jobs: Option<&dyn JobQueue>) -> String {
        match (&self.batch_job, &self.host) {
            (Some(job), _) => format!("{} job {job}", jobs.map_or("batch", |j| j.name())),
            (None, Some(host)) if !self.here() => format!("process {} on {host}", self.pid),
            _ => format!("process {}", self.pid),
        }
    }
}

/// This machine's name.
pub fn this_host() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Queue(Option<bool>);

    impl JobQueue for Queue {
        fn name(&self) -> &str {
            "SLURM"
        }
        fn queued(&self, _job: &str) -> Option<bool> {
            self.0
        }
    }

    #[test]
    fn this_process_runs_and_a_later_one_with_its_pid_does_not() {
        let me = Runner::current(None).unwrap();
        assert!(me.alive(None) && me.here());
        assert_eq!(me.describe(None), format!("process {}", me.pid));
        let reused = Runner {
            started: me.started + 1,
            ..me.clone()
        };
        assert!(!reused.alive(None));
    }

    #[test]
    fn a_process_elsewhere_is_taken_to_run_and_a_job_is_asked_of_its_queue() {
        let elsewhere = Runner {
            pid: 4242,
            started: 1,
            host: Some("another-node".into()),
            batch_job: None,
        };
        assert!(elsewhere.alive(None));
        assert_eq!(elsewhere.describe(None), "process 4242 on another-node");
        let job = Runner {
            batch_job: Some("17".into()),
            ..elsewhere
        };
        assert!(!job.alive(Some(&Queue(Some(false)))));
        assert!(job.alive(Some(&Queue(Some(true)))));
        // No scheduler to ask: as for a process elsewhere.
        assert!(job.alive(Some(&Queue(None))));
        assert_eq!(job.describe(Some(&Queue(None))), "SLURM job 17");
    }

    #[test]
    fn records_of_older_versions_read_back() {
        let runner: Runner =
            serde_json::from_str(r#"{"pid":1,"started":2,"slurm_job":"9"}"#).unwrap();
        assert_eq!(runner.batch_job.as_deref(), Some("9"));
        assert!(runner.here());
    }
}
