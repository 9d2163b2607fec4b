//! `pragma run` on a parallel cell of 1,000 iterations of `true` with 2
//! workers, against GNU parallel (`parallel -j2 true ::: ...`) and the
//! process-spawning floor `xargs -P2 -n1 sh -c true`, in the same run.
//! Targets (issue "Scale and accounting"): at most 0.3x GNU parallel's time
//! and at most 1.5x the xargs floor (a cell's body and its score run in one
//! shell per iteration; this body, plain commands, without a subshell).
//!
//! Run with `cargo bench -p pragma-cli`; GNU parallel must be installed
//! (`apt-get install parallel`), or that comparison is skipped.

use std::process::Command;

mod common;
use common::{TrueCell, median, time};

const ITERATIONS: u32 = 1000;
const ROUNDS: usize = 5;

fn shell(script: &str) -> Command {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(script);
    command
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let cell = TrueCell::new(ITERATIONS);
    let pragma = || cell.run(&[]);
    let xargs = || shell(&format!("seq {ITERATIONS} | xargs -P2 -n1 sh -c true"));
    let parallel = || shell(&format!("parallel -j2 true ::: $(seq {ITERATIONS})"));
    let have_parallel = time(shell("parallel --version")).is_some();
    // A shared machine is noisy: rounds interleave the contenders, and each
    // is judged by its median.
    let (mut ours, mut floor, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(time(pragma()).expect("pragma run succeeds"));
        floor.push(time(xargs()).expect("xargs runs"));
        if have_parallel {
            theirs.push(time(parallel()).expect("GNU parallel runs"));
        }
    }
    let (ours, floor) = (median(&mut ours), median(&mut floor));
    println!(
        "1,000 iterations of `true` on 2 workers, median of {ROUNDS} rounds: pragma run {:.2} s, \
         xargs -P2 sh -c {:.2} s: ratio {:.2} (target <= 1.5)",
        ours,
        floor,
        ours / floor
    );
    if have_parallel {
        let theirs = median(&mut theirs);
        println!(
            "GNU parallel -j2 {:.2} s: ratio {:.2} (target <= 0.3)",
            theirs,
            ours / theirs
        );
    } else {
        println!("*** SKIPPED: GNU parallel is not installed (apt-get install parallel) ***");
    }
}
