//! The machine loses power after every possible file-system call of a
//! small checkpoint log's life (a claim, commits, retains) on a file system
//! that forgets unsynced writes; each time the disk is remounted as a new
//! machine could find it (nothing unsynced kept, everything kept, random
//! subsets) and the log resumed. Each time: the latest checkpoint loads
//! whole, no older than the last commit that returned, with no damaged
//! newer one; the resumed writer commits; its retain leaves no data that
//! no checkpoint uses.

use std::path::Path;

use pragma_checkpoint::testkit::{ForgetfulFileSystem, Survivors};

use super::*;

const ROOT: &str = "/store";

/// Generation `generation`'s state: length and bytes depend on it, so a
/// mix of two commits shows.
fn state_of(generation: u64) -> Vec<u8> {
    let len = 1 + (generation * 7919) % 3000;
    (0..len)
        .map(|i| ((i + generation * 31) % 251) as u8)
        .collect()
}

/// Claims `op` and commits generations until `commits` returned or the
/// machine is gone; the generation of every commit that returned.
async fn write_log(fs: &ForgetfulFileSystem, commits: usize) -> Vec<u64> {
    let mut returned = Vec::new();
    let Ok(store) = LocalStore::with_file_system(ROOT, Arc::new(fs.clone())) else {
        return returned;
    };
    let log = CheckpointLog::new(store);
    let Ok(lease) = log.claim("op").await else {
        return returned;
    };
    let mut generation = lease.epoch() + 1;
    while returned.len() < commits {
        let state = state_of(generation);
        let mut data: &[u8] = &state;
        let mut stdout: &[u8] = b"a log line";
        let parts = vec![
            Part::new("state", &mut data),
            Part::new("stdout", &mut stdout),
        ];
        let meta = json!({ "generation": generation });
        match log.commit_generation(&lease, generation, meta, parts).await {
            Ok(manifest) => returned.push(manifest.generation()),
            Err(_) => return returned,
        }
        if log.retain(&lease, &[]).await.is_err() {
            return returned;
        }
        generation += 1;
    }
    returned
}

/// The data directories under `ops/op/data` and the temporary files of
/// the whole store.
fn leftovers(fs: &ForgetfulFileSystem) -> (Vec<String>, Vec<String>) {
    let files = fs.files_under(Path::new(ROOT)).unwrap();
    let mut data_dirs: Vec<String> = files
        .iter()
        .filter_map(|(path, _)| {
            let relative = path
                .strip_prefix(Path::new(ROOT).join("ops/op/data"))
                .ok()?;
            Some(relative.iter().next()?.to_string_lossy().into_owned())
        })
        .collect();
    data_dirs.dedup();
    let temporaries = files
        .iter()
        .filter(|(path, _)| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .map(|(path, _)| path.display().to_string())
        .collect();
    (data_dirs, temporaries)
}

/// Remounts the disk `survivors` leave, checks the log, and resumes it.
async fn check_after_power_loss(
    crashed: &ForgetfulFileSystem,
    survivors: Survivors,
    returned: &[u64],
    point: &str,
) {
    let fs = crashed.after_power_loss(survivors);
    let store = LocalStore::with_file_system(ROOT, Arc::new(fs.clone())).unwrap();
    let log = CheckpointLog::new(store.clone());
    let loaded = log.load_latest("op").await.unwrap();
    match (&loaded, returned.last()) {
        (None, None) => {}
        (None, Some(last)) => panic!("{point}: commit {last} returned, and nothing loads"),
        (Some(loaded), last) => {
            let manifest = &loaded.manifest;
            assert!(
                loaded.warnings.is_empty(),
                "{point}: a damaged newer checkpoint: {:?}",
                loaded.warnings
            );
            assert!(
                last.is_none_or(|last| manifest.generation() >= *last),
                "{point}: loaded generation {} after commit {last:?} returned",
                manifest.generation()
            );
            assert_eq!(
                read_part(&log, manifest, "state").await,
                state_of(manifest.generation()),
                "{point}"
            );
        }
    }
    // The writer resumes: a claim, a commit, a retain.
    let lease = log.claim("op").await.unwrap();
    let next = lease.epoch() + 1;
    let state = state_of(next);
    let mut data: &[u8] = &state;
    log.commit_generation(&lease, next, json!({}), vec![Part::new("state", &mut data)])
        .await
        .unwrap_or_else(|e| panic!("{point}: the resumed commit failed: {e}"));
    log.retain(&lease, &[]).await.unwrap();
    // What the first machine left half-written, the new owner takes.
    log.remove_leftovers(&lease).await.unwrap();
    let (data_dirs, temporaries) = leftovers(&fs);
    assert_eq!(
        data_dirs.len(),
        1,
        "{point}: data no checkpoint uses: {data_dirs:?}"
    );
    assert!(temporaries.is_empty(), "{point}: {temporaries:?}");
}

#[tokio::test]
async fn every_crash_point_of_a_log_leaves_the_last_returned_commit() {
    const COMMITS: usize = 4;
    // The uninterrupted run: how many changing calls it makes.
    let whole = ForgetfulFileSystem::new();
    assert_eq!(write_log(&whole, COMMITS).await.len(), COMMITS);
    let calls = whole.calls();
    let mut states = 0;
    for k in 0..=calls {
        let fs = ForgetfulFileSystem::new();
        fs.lose_power_after(k);
        let returned = write_log(&fs, COMMITS).await;
        fs.lose_power_now();
        let mut survivors = vec![Survivors::Nothing, Survivors::Everything];
        survivors.extend((0..4).map(|seed| Survivors::Random(k * 10 + seed)));
        for survivors in survivors {
            let point = format!("power lost after call {k} of {calls}, {survivors:?} kept");
            check_after_power_loss(&fs, survivors, &returned, &point).await;
            states += 1;
        }
    }
    eprintln!("log: {} crash points, {states} disks remounted", calls + 1);
}
