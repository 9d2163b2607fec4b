//! What can go wrong with SLURM.

use std::path::PathBuf;

/// Why the backend cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlurmError {
    /// A SLURM command could not be started: it is missing here (no
    /// SLURM on this machine) or cannot be executed.
    #[error("cannot run `{program}`: {source} (is SLURM installed, and is this a submit host?)")]
    Spawn {
        /// The program.
        program: String,
        /// Why it could not be started.
        source: std::io::Error,
    },
    /// `sbatch` or another SLURM command failed.
    #[error("{command}: {message}")]
    Command {
        /// The command.
        command: String,
        /// What it said.
        message: String,
    },
    /// The shared directory cannot be used.
    #[error("the shared directory `{dir}`: {source}")]
    SharedDir {
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}
