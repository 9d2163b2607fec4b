//! The executor's overhead, as ratios measured in one run:
//!
//! 1. A parallel operation of 100,000 no-op iterations on 8 workers against
//!    a plain tokio `JoinSet` + `Semaphore` loop calling the same no-op.
//!    Target: at most 1.5x.
//! 2. A parallel operation of 64 iterations that each sleep 20 ms on 8
//!    workers against the ideal makespan of 8 x 20 ms. Target: at most 1.05x.
//!
//! Both use the in-memory store, so the durable records of finished
//! iterations are part of what is measured. Run with
//! `cargo bench -p pragma-executor-local`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pragma_checkpoint::MemoryStore;
use pragma_executor_local::{Config, Executor};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

mod common;
use common::{Noop, body, run_parallel};

async fn executor_run(iterations: u64, sleep: Duration) -> Duration {
    let config = Config::default().workers(8);
    let executor = Executor::new(Noop::sleeping(sleep), MemoryStore::new(), config);
    run_parallel(&executor, iterations).await
}

async fn baseline_run(iterations: u64, sleep: Duration) -> Duration {
    let begin = Instant::now();
    let permits = Arc::new(Semaphore::new(8));
    let mut set = JoinSet::new();
    for _ in 0..iterations {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("a permit");
        set.spawn(async move {
            body(sleep).await;
            drop(permit);
        });
        while set.try_join_next().is_some() {}
    }
    while set.join_next().await.is_some() {}
    begin.elapsed()
}

/// Interleaved rounds of each measurement; their medians are compared.
/// Odd, so that the median is one round's time.
const ROUNDS: usize = 11;

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let (mut ours, mut plain) = (Vec::new(), Vec::new());
        // Interleaved rounds, judged by their medians: a shared machine is
        // noisy.
        for _ in 0..ROUNDS {
            plain.push(baseline_run(100_000, Duration::ZERO).await);
            ours.push(executor_run(100_000, Duration::ZERO).await);
        }
        let (ours, plain) = (median(ours), median(plain));
        println!(
            "100,000 no-op iterations on 8 workers, median of {ROUNDS} interleaved rounds: executor {:.3} s ({:.1} us each), JoinSet+Semaphore {:.3} s ({:.2} us each): ratio {:.2} (target <= 1.5)",
            ours.as_secs_f64(),
            ours.as_secs_f64() * 10.0,
            plain.as_secs_f64(),
            plain.as_secs_f64() * 10.0,
            ours.as_secs_f64() / plain.as_secs_f64()
        );

        let ideal = Duration::from_millis(8 * 20);
        // Interleaved rounds, as above; the plain loop with the same sleeps
        // is the reference for what the machine allows.
        let (mut sleeping, mut floor) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            floor.push(baseline_run(64, Duration::from_millis(20)).await);
            sleeping.push(executor_run(64, Duration::from_millis(20)).await);
        }
        let (sleeping, floor) = (median(sleeping), median(floor));
        println!(
            "64 iterations of 20 ms on 8 workers, median of {ROUNDS}: executor {:.3} s, ideal {:.3} s: ratio {:.3} (target <= 1.05); \
             the plain JoinSet+Semaphore loop takes {:.3} s (ratio {:.3} to the ideal)",
            sleeping.as_secs_f64(),
            ideal.as_secs_f64(),
            sleeping.as_secs_f64() / ideal.as_secs_f64(),
            floor.as_secs_f64(),
            floor.as_secs_f64() / ideal.as_secs_f64()
        );
    });
}
