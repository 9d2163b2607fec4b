//! A process committing checkpoints in a loop is SIGKILLed at random
//! moments, 100 times. After every kill the log loads a checkpoint that was
//! committed whole, never a torn one, and nothing that a returned commit
//! wrote is lost.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::*;

const CHILD_ENV: &str = "PRAGMA_CHECKPOINT_CRASH_CHILD";

/// The bytes of generation `generation`'s state: its length and content
/// both depend on the generation, so a mix of two commits shows.
fn state_of(generation: u64, epoch: u64) -> Vec<u8> {
    let len = 1 + (generation * 7919 + epoch * 104_729) % (512 << 10);
    (0..len)
        .map(|i| ((i + generation * 31 + epoch) % 251) as u8)
        .collect()
}

/// The child: resume the operation and commit forever, reporting each
/// commit that returned.
#[test]
#[ignore = "the child process of the crash test; it runs only when the parent starts it"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let log = CheckpointLog::new(LocalStore::new(dir).unwrap());
        let lease = log.claim("op").await.unwrap();
        // The only writer: the generations after its claim are its own.
        let mut generation = lease.epoch() + 1;
        loop {
            let state = state_of(generation, lease.epoch());
            let mut data: &[u8] = &state;
            let mut stdout: &[u8] = b"log line";
            let meta = json!({ "generation": generation, "epoch": lease.epoch() });
            let parts = vec![
                Part::new("state", &mut data),
                Part::new("stdout", &mut stdout),
            ];
            let manifest = log
                .commit_generation(&lease, generation, meta, parts)
                .await
                .unwrap();
            println!("committed {}", manifest.generation());
            log.retain(&lease, &[]).await.unwrap();
            generation = manifest.generation() + 1;
        }
    });
}

#[test]
fn killed_at_random_moments_the_log_always_loads_a_whole_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let mut durable: Option<u64> = None;
    let mut kills_after_a_commit = 0;
    for round in 0..100 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash::crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Let it commit 0 to 3 times (0 in every tenth round, to kill it
        // during start-up or its first commit), then kill it a random few
        // milliseconds later: mid-commit, mid-retain, or in between.
        let wanted = if round % 10 == 0 {
            0
        } else {
            1 + random(3) as usize
        };
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let committed = |line: &str| {
            line.find("committed ")
                .and_then(|at| line[at + 10..].trim().parse::<u64>().ok())
        };
        let mut reported = Vec::new();
        while reported.len() < wanted {
            match lines.next() {
                Some(Ok(line)) => reported.extend(committed(&line)),
                _ => panic!("round {round}: the child stopped before committing"),
            }
        }
        std::thread::sleep(Duration::from_millis(random(25)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reported.extend(
            lines
                .map_while(Result::ok)
                .filter_map(|line| committed(&line)),
        );
        if let Some(&last) = reported.last() {
            durable = Some(last);
            kills_after_a_commit += 1;
        }

        let loaded = runtime.block_on(async {
            let log = CheckpointLog::new(LocalStore::new(dir.path()).unwrap());
            let loaded = log.load_latest("op").await.unwrap();
            let state = match &loaded {
                Some(l) => Some(read_part(&log, &l.manifest, "state").await),
                None => None,
            };
            (loaded, state)
        });
        match (loaded, durable) {
            (_, None) => {}
            ((Some(loaded), Some(state)), Some(durable)) => {
                let m = &loaded.manifest;
                assert!(
                    loaded.warnings.is_empty(),
                    "round {round}: {:?}",
                    loaded.warnings
                );
                assert!(
                    m.generation() >= durable,
                    "round {round}: loaded {} but {durable} was committed",
                    m.generation()
                );
                assert_eq!(m.meta()["generation"], m.generation(), "round {round}");
                let epoch = m.meta()["epoch"].as_u64().unwrap();
                assert!(
                    state == state_of(m.generation(), epoch),
                    "round {round}: torn state in generation {}",
                    m.generation()
                );
            }
            (other, durable) => {
                panic!("round {round}: {durable:?} was committed, but loading gave {other:?}")
            }
        }
    }
    assert!(
        kills_after_a_commit >= 50,
        "only {kills_after_a_commit} of 100 kills came after a commit: the test is too fast to mean much"
    );
    eprintln!(
        "crash test: 100 kills, {kills_after_a_commit} after at least one commit; last durable generation {durable:?}"
    );
}
