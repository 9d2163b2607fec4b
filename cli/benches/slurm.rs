//! `pragma run --backend slurm` on a parallel cell of 20 iterations of
//! `true`, 2 at a time, against submitting the same array with plain
//! `sbatch --array=0-19%2` and a trivial script and watching the queue
//! until it is done, in the same run:
//! the overhead per iteration of going through pragma (specs, reports,
//! the shared store, scoring) on top of SLURM's own.
//!
//! Needs a cluster (`eval "$(scripts/start-slurm)"`); run with
//! `cargo bench -p pragma-cli --bench slurm`.

use std::process::Command;

mod common;
use common::{TrueCell, median, time};

const ITERATIONS: u32 = 20;
const ROUNDS: usize = 3;

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let mut version = Command::new("sbatch");
    version.arg("--version");
    if time(version).is_none() {
        println!("*** SKIPPED: no SLURM here (eval \"$(scripts/start-slurm)\") ***");
        return;
    }
    let cell = TrueCell::new(ITERATIONS);
    let script = cell.dir().join("trivial.sh");
    std::fs::write(&script, "#!/bin/sh\ntrue\n").expect("the script");
    let pragma = || cell.run(&["--backend", "slurm"]);
    // Submitted, then watched as pragma watches its jobs (every 200 ms):
    // `sbatch --wait` polls far less often, which would flatter pragma.
    let plain = || {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(
                "j=$(sbatch --parsable --output=/dev/null --array=0-$(($1 - 1))%2 \"$2\") || exit 1; \
                 while squeue -h -j \"$j\" 2>/dev/null | grep -q .; do sleep 0.2; done",
            )
            .arg("plain")
            .arg(ITERATIONS.to_string())
            .arg(&script);
        command
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(time(pragma()).expect("pragma run --backend slurm succeeds"));
        theirs.push(time(plain()).expect("sbatch succeeds"));
    }
    let (ours, theirs) = (median(&mut ours), median(&mut theirs));
    println!(
        "{ITERATIONS} iterations of `true`, 2 at a time on SLURM, median of {ROUNDS}: pragma run --backend slurm {:.2} s, \
         sbatch --array {:.2} s: ratio {:.2}, {:.0} ms more per iteration",
        ours,
        theirs,
        ours / theirs,
        (ours - theirs) * 1000.0 / f64::from(ITERATIONS)
    );
}
