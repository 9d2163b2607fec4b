//! Where an operation's files live: `--store DIR` or `--store s3://bucket/prefix`.
//!
//! A directory store holds everything: checkpoints under `store/`, working
//! copies under `work/`, logs under `logs/`, and the lifecycle's records
//! under `runs/` and `ops/` (see `pragma_session::Records`). With an object-store URL, the checkpoints go
//! to the bucket and the rest stays on this machine, in
//! `.pragma/remote/<digest of the URL>` of the current directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pragma_checkpoint::{LocalStore, ObjectStoreBackend, Store};
use pragma_executor_local::{Config, Executor};
use pragma_session::{JobQueue, Records, Session};

use crate::shell::ShellHost;

/// The checkpoint store every operation of a location uses.
pub(crate) type Checkpoints = Arc<dyn Store>;

/// The executor the command builds on a location.
pub(crate) type ShellExecutor = Executor<ShellHost, Checkpoints>;

/// The operation lifecycle the command runs on a location.
pub(crate) type ShellSession = Session<ShellHost, Checkpoints>;

/// An opened `--store`.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    /// The directory for working copies, logs and the command's records.
    pub(crate) local: PathBuf,
    /// Where checkpoints go.
    pub(crate) checkpoints: Checkpoints,
    /// The `--store` value, for messages and commands to suggest.
    pub(crate) shown: String,
}

impl Location {
    /// Opens (creating if need be) the store that `spec` names.
    pub(crate) fn open(spec: &str) -> Result<Location, String> {
        let (local, checkpoints): (PathBuf, Checkpoints) = match spec.split_once("://") {
            Some(("s3", rest)) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(format!(
                        "the store URL `{spec}` names no bucket; write it as s3://BUCKET/PREFIX"
                    ));
                }
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| {
                        format!(
                            "cannot use the store `{spec}`: {e} (credentials and the endpoint come from \
                             AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT and AWS_ALLOW_HTTP)"
                        )
                    })?;
                let backend = ObjectStoreBackend::new(Arc::new(s3), prefix)
                    .map_err(|e| format!("cannot use the store `{spec}`: {e}"))?;
                let mut hasher = crc32fast::Hasher::new();
                hasher.update(spec.trim_end_matches('/').as_bytes());
                let local = Path::new(".pragma")
                    .join("remote")
                    .join(format!("{:08x}", hasher.finalize()));
                (local, Arc::new(backend))
            }
            Some((scheme, _)) => {
                return Err(format!(
                    "the store `{spec}` has the scheme `{scheme}`, which pragma does not support; \
                     give a directory or an s3://BUCKET/PREFIX URL"
                ));
            }
            None => {
                let local = PathBuf::from(spec);
                let store = LocalStore::new(local.join("store"))
                    .map_err(|e| format!("cannot use the store `{spec}`: {e}"))?;
                (local, Arc::new(store))
            }
        };
        std::fs::create_dir_all(&local)
            .map_err(|e| format!("cannot use the store `{spec}`: {}: {e}", local.display()))?;
        Ok(Location {
            local,
            checkpoints,
            shown: spec.to_owned(),
        })
    }

    /// Opens an existing store, for the commands that only read one.
    pub(crate) fn existing(spec: &str) -> Result<Location, String> {
        if !spec.contains("://") && !Path::new(spec).join("store").is_dir() {
            return Err(format!(
                "there is no store at `{spec}` (run `pragma run` there first, or pass --store)"
            ));
        }
        Location::open(spec)
    }

    /// The host for shell cells, with its working copies and logs here.
    pub(crate) fn host(&self) -> Result<ShellHost, String> {
        ShellHost::new(self.local.join("work"), self.logs())
            .map_err(|e| format!("cannot use the store `{}`: {e}", self.shown))
    }

    /// An executor on this location.
    pub(crate) fn executor(&self, host: ShellHost, config: Config) -> ShellExecutor {
        Executor::new(host, self.checkpoints.clone(), config)
    }

    /// The lifecycle of operations on this location, on `executor`.
    pub(crate) fn session(&self, executor: ShellExecutor) -> ShellSession {
        Session::new(executor, self.records()).with_job_queue(Arc::new(SlurmJobs))
    }

    /// The lifecycle's records of this location's operations.
    pub(crate) fn records(&self) -> Records {
        Records::new(&self.local)
    }

    /// Where iterations' standard output and error are kept.
    pub(crate) fn logs(&self) -> PathBuf {
        self.local.join("logs")
    }

    /// `--store X` when X is not the default, for suggested commands.
    pub(crate) fn store_flag(&self) -> String {
        if self.shown == ".pragma" {
            String::new()
        } else {
            format!(" --store {}", quoted(&self.shown))
        }
    }
}

/// Quotes `text` for a shell command line the user may copy.
pub(crate) fn quoted(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
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
