//! Scheduling decisions per second for a 1,000,000-iteration parallel plan
//! on 8 workers: every iteration is started, reported finished, and the
//! next one started on the freed worker. Prints the median of 5 runs.
//!
//! Run with `cargo bench -p pragma-scheduler`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use pragma_scheduler::{Action, Budgets, Event, Plan, Scheduler};

const ITERATIONS: u64 = 1_000_000;
const WORKERS: u64 = 8;

fn one_run() -> Duration {
    let begin = Instant::now();
    let mut scheduler = Scheduler::new(WORKERS);
    let plan = Plan::Parallel {
        iterations: ITERATIONS,
        max_workers: Some(WORKERS),
    };
    let (_, actions) = scheduler
        .submit(plan, Budgets::default())
        .expect("a valid plan");
    let mut running: VecDeque<_> = VecDeque::new();
    let mut started = 0u64;
    let mut take = |actions: Vec<Action>, running: &mut VecDeque<_>| {
        for action in actions {
            if let Action::Start { worker, .. } = action {
                started += 1;
                running.push_back(worker);
            }
        }
    };
    take(actions, &mut running);
    while let Some(worker) = running.pop_front() {
        let actions = scheduler.handle(Event::IterationFinished(worker));
        take(actions, &mut running);
    }
    let elapsed = begin.elapsed();
    assert_eq!(started, ITERATIONS);
    elapsed
}

fn main() {
    // `cargo test --benches` runs this too; keep that quick.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let mut runs: Vec<Duration> = (0..5).map(|_| one_run()).collect();
    runs.sort();
    let median = runs[2];
    let per_second = ITERATIONS as f64 / median.as_secs_f64();
    println!(
        "scheduler: {ITERATIONS} iterations on {WORKERS} workers in {:.3} s (median of 5): \
         {:.2} million start+finish decisions per second, {:.0} ns each",
        median.as_secs_f64(),
        per_second / 1e6,
        median.as_nanos() as f64 / ITERATIONS as f64
    );
}
