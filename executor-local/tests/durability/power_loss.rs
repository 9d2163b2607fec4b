//! The local store on a file system that forgets unsynced writes: power is
//! lost after every changing call of an uninterrupted run, and the disk is
//! remounted three ways (nothing unsynced kept, everything kept, a random
//! subset).

use std::path::Path;

use pragma_checkpoint::LocalStore;
use pragma_checkpoint::testkit::{ForgetfulFileSystem, Survivors};

use super::*;

const ROOT: &str = "/store";

fn store_on(fs: &ForgetfulFileSystem) -> Option<LocalStore> {
    LocalStore::with_file_system(ROOT, Arc::new(fs.clone())).ok()
}

fn power_lost(fs: &ForgetfulFileSystem) -> Gone {
    let fs = fs.clone();
    Arc::new(move || fs.power_lost())
}

async fn every_crash_point(cell: &str) {
    let reference = reference(cell).await;
    let whole = ForgetfulFileSystem::new();
    let uninterrupted = first_life(store_on(&whole), power_lost(&whole), cell).await;
    assert!(uninterrupted.outcome.is_some());
    let calls = whole.calls();
    let (mut disks, mut most_lost) = (0, 0);
    for k in 0..=calls {
        let fs = ForgetfulFileSystem::new();
        fs.lose_power_after(k);
        let first = first_life(store_on(&fs), power_lost(&fs), cell).await;
        fs.lose_power_now();
        for survivors in [
            Survivors::Nothing,
            Survivors::Everything,
            Survivors::Random(k),
        ] {
            let point = format!("power lost after call {k} of {calls}, {survivors:?} kept");
            let disk = fs.after_power_loss(survivors);
            let store =
                store_on(&disk).unwrap_or_else(|| panic!("{point}: the store does not open"));
            let second = second_life(store.clone(), cell, first.op.as_deref(), &point).await;
            most_lost = most_lost.max(check_resumed(cell, &reference, &first, &second, &point));
            check_nothing_unreferenced(&store, &second.outcome.op, &point).await;
            // What the first machine left half-written, the executor that
            // took the operation up removed.
            let temporaries: Vec<_> = disk
                .files_under(Path::new(ROOT))
                .unwrap()
                .into_iter()
                .filter(|(path, _)| {
                    path.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect();
            assert!(temporaries.is_empty(), "{point}: {temporaries:?}");
            disks += 1;
        }
    }
    eprintln!(
        "power loss, {:?}: {} crash points, {disks} disks remounted, at most {most_lost} runs lost",
        cell.lines().next().unwrap_or_default(),
        calls + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_survives_power_loss_at_every_call() {
    every_crash_point(REPEAT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_operation_survives_power_loss_at_every_call() {
    every_crash_point(PARALLEL).await;
}
