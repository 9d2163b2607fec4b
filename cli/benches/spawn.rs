//! `pragma run` on a parallel cell of 1,000 iterations of `true` with 2
//! workers, against GNU parallel (`parallel -j2 true ::: ...`) and the
//! process-spawning floor `xargs -P2 -n1 sh -c true`, in the same run.
//! Targets (issue on the `pragma` command): at most 0.5x GNU parallel's time
//! and at most 2.5x the xargs floor (a cell costs a body shell and a score
//! shell per iteration).
//!
//! Run with `cargo bench -p pragma-cli`; GNU parallel must be installed
//! (`apt-get install parallel`), or that comparison is skipped.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ITERATIONS: u32 = 1000;

fn time(mut command: Command) -> Option<Duration> {
    let begin = Instant::now();
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    status.success().then(|| begin.elapsed())
}

fn shell(script: &str) -> Command {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(script);
    command
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir(dir.path().join("state")).expect("the state directory");
    let cell = dir.path().join("cell");
    std::fs::write(
        &cell,
        format!(
            "#pragma parallel --iterations {ITERATIONS} --parallel-runs 2 --max-by 'echo 1'\ntrue\n"
        ),
    )
    .expect("the cell");
    let mut pragma = Command::new(env!("CARGO_BIN_EXE_pragma"));
    pragma
        .arg("run")
        .arg(&cell)
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg("--store")
        .arg(dir.path().join("store"))
        .args(["--workers", "2"]);
    let ours = time(pragma).expect("pragma run succeeds");
    let xargs = time(shell(&format!(
        "seq {ITERATIONS} | xargs -P2 -n1 sh -c true"
    )))
    .expect("xargs runs");
    println!(
        "1,000 iterations of `true` on 2 workers: pragma run {:.2} s, xargs -P2 sh -c {:.2} s: ratio {:.2} (target <= 2.5)",
        ours.as_secs_f64(),
        xargs.as_secs_f64(),
        ours.as_secs_f64() / xargs.as_secs_f64()
    );
    match time(shell(&format!("parallel -j2 true ::: $(seq {ITERATIONS})"))) {
        Some(parallel) => println!(
            "GNU parallel -j2 {:.2} s: ratio {:.2} (target <= 0.5)",
            parallel.as_secs_f64(),
            ours.as_secs_f64() / parallel.as_secs_f64()
        ),
        None => {
            println!("*** SKIPPED: GNU parallel is not installed (apt-get install parallel) ***")
        }
    }
}
