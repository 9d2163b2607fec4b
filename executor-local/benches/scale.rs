//! The executor at scale, each scenario in a process of its own (so that
//! its peak memory is its own), with a no-op host on `LocalStore` and 8
//! workers:
//!
//! 1. one parallel operation of 1,000,000 iterations: time, peak RSS above
//!    the process's baseline, store bytes per iteration (targets: <= 2 s
//!    here, <= 64 MiB, <= 16 B);
//! 2. the same with 10,000,000 iterations, when `PRAGMA_BENCH_10M=1` (it
//!    takes a while): memory must stay flat;
//! 3. 10,000 operations of 10 iterations submitted at once: time, peak
//!    RSS, whether they were admitted in submission order, and how long the
//!    last one waited for its first start.
//!
//! The executor runs on a tokio runtime of one thread, as in `pragma run`
//! (the work of a real host is in its workers' processes); with
//! `--multi-thread`, on tokio's default multi-thread runtime, whose
//! hand-offs between threads cost a no-op iteration about a third more.
//!
//! Run with `cargo bench -p pragma-executor-local --bench scale`.

use std::sync::Arc;
use std::time::Instant;

use pragma_checkpoint::LocalStore;
use pragma_executor_local::{Config, Executor, FinalStatus};

mod common;
use common::{Noop, run_parallel};

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes of the files under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            total += bytes_under(&entry.path());
        } else {
            total += entry.metadata().map_or(0, |m| m.len());
        }
    }
    total
}

fn executor(dir: &std::path::Path, note_runs: bool) -> Executor<Noop, LocalStore> {
    let store = LocalStore::new(dir.join("store")).expect("a store");
    let host = Noop::noting_runs(note_runs);
    Executor::new(host, store, Config::default().workers(8))
}

/// One parallel operation of `iterations` no-op iterations.
async fn one_large(iterations: u64) {
    let dir = tempfile::tempdir().expect("a directory");
    let baseline = status_kib("VmRSS:");
    let executor = executor(dir.path(), false);
    let elapsed = run_parallel(&executor, iterations).await;
    let peak = status_kib("VmHWM:").saturating_sub(baseline);
    let bytes = bytes_under(&dir.path().join("store"));
    println!(
        "{iterations} no-op iterations on 8 workers: {:.2} s, peak RSS {:.1} MiB above the baseline, \
         {:.1} store bytes per iteration (targets: 1M in <= 2 s, <= 64 MiB, <= 16 B)",
        elapsed.as_secs_f64(),
        peak as f64 / 1024.0,
        bytes as f64 / iterations as f64
    );
}

/// `operations` operations of 10 iterations, submitted at once.
async fn many_small(operations: usize) {
    let dir = tempfile::tempdir().expect("a directory");
    let baseline = status_kib("VmRSS:");
    let executor = executor(dir.path(), true);
    let cell = "#pragma parallel --iterations 10 --max-by score\nnoop";
    let begin = Instant::now();
    let mut handles = Vec::with_capacity(operations);
    for _ in 0..operations {
        handles.push(executor.submit(cell, ()).await.expect("submit"));
    }
    let ids: Vec<String> = handles.iter().map(|h| h.id().to_owned()).collect();
    for handle in handles {
        let outcome = handle.wait().await.expect("outcome");
        assert_eq!(outcome.status, FinalStatus::Succeeded);
    }
    let elapsed = begin.elapsed();
    // The order of each operation's first run: the order of admission.
    let runs = executor.host().runs();
    let position: std::collections::HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<usize> = runs
        .iter()
        .filter(|op| seen.insert(Arc::clone(op)))
        .map(|op| position[&**op])
        .collect();
    let out_of_order = firsts.windows(2).filter(|w| w[1] < w[0]).count();
    let last_id = ids.last().map(String::as_str).unwrap_or_default();
    let last_first_run = runs
        .iter()
        .position(|op| &**op == last_id)
        .map_or(0, |i| i + 1);
    let peak = status_kib("VmHWM:").saturating_sub(baseline);
    println!(
        "{operations} operations of 10 no-op iterations on 8 workers: {:.2} s, peak RSS {:.1} MiB above the \
         baseline; admitted in submission order: {} ({out_of_order} of {} first runs out of order); \
         {} runs in all, the last operation's first run was number {}",
        elapsed.as_secs_f64(),
        peak as f64 / 1024.0,
        if out_of_order == 0 { "yes" } else { "no" },
        firsts.len(),
        runs.len(),
        last_first_run
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let multi_thread = args.iter().any(|a| a == "--multi-thread");
    let mut runtime = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = runtime.enable_all().build().expect("a runtime");
    match args
        .iter()
        .position(|a| a == "--scenario")
        .map(|i| args[i + 1].as_str())
    {
        Some("large") => runtime.block_on(one_large(1_000_000)),
        Some("larger") => runtime.block_on(one_large(10_000_000)),
        Some("many") => runtime.block_on(many_small(10_000)),
        _ => {
            // Each scenario in a process of its own: its peak is its own.
            let mut scenarios = vec!["large", "many"];
            if std::env::var_os("PRAGMA_BENCH_10M").is_some() {
                scenarios.insert(1, "larger");
            }
            let me = std::env::current_exe().expect("this bench");
            for scenario in scenarios {
                let status = std::process::Command::new(&me)
                    .args(["--scenario", scenario])
                    .args(multi_thread.then_some("--multi-thread"))
                    .status()
                    .expect("a scenario");
                assert!(status.success(), "scenario {scenario} failed");
            }
        }
    }
}
