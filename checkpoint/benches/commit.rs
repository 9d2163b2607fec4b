//! Committing a checkpoint to the local backend against plain `std::fs`,
//! and the peak memory of a large commit.
//!
//! 1. A 256 MiB checkpoint committed with `CheckpointLog` on `LocalStore`
//!    against writing and fsyncing the same bytes with `std::fs`, in the same
//!    run (5 rounds each, interleaved; medians). Target: ratio at most 1.3.
//! 2. The peak resident memory while committing a 1 GiB checkpoint streamed
//!    from a generator, above the process's resident memory before it.
//!    Target: under 64 MiB.
//!
//! Run with `cargo bench -p pragma-checkpoint`.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pragma_checkpoint::{CheckpointLog, LocalStore, Part};
use tokio::io::{AsyncRead, ReadBuf};

const SIZE: usize = 256 << 20;
const LARGE: u64 = 1 << 30;

/// Yields `remaining` bytes without holding them.
struct Generated {
    remaining: u64,
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.remaining) as usize;
        buf.initialize_unfilled_to(n).fill(0x5a);
        buf.advance(n);
        self.remaining -= n as u64;
        Poll::Ready(Ok(()))
    }
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary directory");
    let bytes: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 251) as u8).collect();

    let log = CheckpointLog::new(LocalStore::new(dir.path().join("store")).expect("a store"));
    let lease = runtime.block_on(log.claim("bench")).expect("a lease");
    let (mut ours, mut plain) = (Vec::new(), Vec::new());
    // Interleaved, alternating which goes first; clean-up outside the timings.
    for round in 0..5 {
        let time_plain = |plain: &mut Vec<Duration>| {
            let path = dir.path().join("plain");
            let begin = Instant::now();
            let mut file = std::fs::File::create(&path).expect("a file");
            file.write_all(&bytes).expect("write");
            file.sync_all().expect("fsync");
            plain.push(begin.elapsed());
            std::fs::remove_file(&path).expect("remove");
        };
        if round % 2 == 0 {
            time_plain(&mut plain);
        }
        let begin = Instant::now();
        runtime
            .block_on(async {
                let mut data: &[u8] = &bytes;
                let meta = serde_json::json!({ "round": round });
                log.commit(&lease, meta, vec![Part::new("state", &mut data)])
                    .await
            })
            .expect("commit");
        ours.push(begin.elapsed());
        runtime.block_on(log.retain(&lease, &[])).expect("retain");
        if round % 2 == 1 {
            time_plain(&mut plain);
        }
    }
    let (ours, plain) = (median(ours), median(plain));
    println!(
        "commit 256 MiB: CheckpointLog+LocalStore {:.3} s, std::fs write+fsync {:.3} s, ratio {:.2} (target <= 1.3)",
        ours.as_secs_f64(),
        plain.as_secs_f64(),
        ours.as_secs_f64() / plain.as_secs_f64()
    );
    drop(bytes);

    // Peak memory: reset the high-water mark, then commit 1 GiB streamed.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let baseline = status_kib("VmRSS:");
    runtime
        .block_on(async {
            let mut source = Generated { remaining: LARGE };
            log.commit(
                &lease,
                serde_json::json!({}),
                vec![Part::new("state", &mut source)],
            )
            .await?;
            log.retain(&lease, &[]).await
        })
        .expect("commit 1 GiB");
    let peak = status_kib("VmHWM:");
    println!(
        "commit 1 GiB streamed: peak RSS {} MiB, {} MiB above the baseline of {} MiB (target < 64 MiB)",
        peak / 1024,
        peak.saturating_sub(baseline) / 1024,
        baseline / 1024
    );
}
