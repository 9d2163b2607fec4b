//! What can go wrong with SLURM.

use std::path::PathBuf;

/// Why the backend cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlurmError {
    /// `sbatch` or another SLURM command failed or is missing.
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
