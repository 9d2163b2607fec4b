//! What the `pragma` benchmarks share.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `command` takes, if it succeeds; its output is discarded.
pub(crate) fn time(mut command: Command) -> Option<Duration> {
    let begin = Instant::now();
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    status.success().then(|| begin.elapsed())
}

/// The median of `times`, in seconds.
pub(crate) fn median(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64()
}

/// A parallel cell of `true` bodies, 2 at a time, and the state and store
/// it runs on, in a temporary directory.
pub(crate) struct TrueCell {
    dir: tempfile::TempDir,
}

impl TrueCell {
    /// The cell, with `iterations` iterations.
    pub(crate) fn new(iterations: u32) -> TrueCell {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(dir.path().join("state")).expect("the state directory");
        std::fs::write(
            dir.path().join("cell"),
            format!(
                "#pragma parallel --iterations {iterations} --parallel-runs 2 --max-by 'echo 1'\ntrue\n"
            ),
        )
        .expect("the cell");
        TrueCell { dir }
    }

    /// The temporary directory, for the benchmark's own files.
    // Each benchmark compiles this module; not every one needs this.
    #[allow(dead_code)]
    pub(crate) fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// `pragma run` of the cell on 2 workers with `extra` arguments, on a
    /// fresh store: every round runs the whole operation.
    pub(crate) fn run(&self, extra: &[&str]) -> Command {
        let _ = std::fs::remove_dir_all(self.dir.path().join("store"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_pragma"));
        command
            .arg("run")
            .arg(self.dir.path().join("cell"))
            .arg("--state")
            .arg(self.dir.path().join("state"))
            .arg("--store")
            .arg(self.dir.path().join("store"))
            .args(["--workers", "2"])
            .args(extra);
        command
    }
}
