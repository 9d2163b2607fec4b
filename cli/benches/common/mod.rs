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
