//! `pragma run` on a machine that loses power: the state directory and the
//! store on a FUSE disk that forgets what was not synced
//! (`testing/forgetful-mount`). Power goes after the k-th changing call,
//! for crash points drawn from a printed seed (`PRAGMA_TEST_SEED` repeats
//! them); on each disk a machine could have kept (nothing unsynced,
//! everything, a random subset), every state file is whole, old or new,
//! and `pragma run` of the cell again ends with the state an uninterrupted
//! run leaves.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CELL: &str = "#pragma repeat --iterations 4 --checkpoint-period 2 --iteration-var i --max-by 'cat score'\n\
    echo \"new a $i\" > a.txt\n\
    rm -f b.txt\n\
    echo 'new c' > sub/c.txt\n\
    echo 'new d' > d.txt\n\
    echo $((i + 1)) > score\n";

/// The state before: every file as the first machine had it, synced.
fn old_state() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("a.txt", "old a\n"),
        ("b.txt", "old b\n"),
        ("sub/c.txt", "old c\n"),
        ("score", "0\n"),
    ])
}

/// What running the cell leaves.
fn new_state() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("a.txt", "new a 3\n"),
        ("sub/c.txt", "new c\n"),
        ("d.txt", "new d\n"),
        ("score", "4\n"),
    ])
}

/// The forgetful-mount tool, beside this test's `pragma`; `None` (said
/// loudly) without it or without FUSE, except under CI.
fn mount_tool() -> Option<PathBuf> {
    let pragma = PathBuf::from(env!("CARGO_BIN_EXE_pragma"));
    let tool = pragma.with_file_name("forgetful-mount");
    let missing = if !tool.exists() {
        Some("target/debug/forgetful-mount is missing (cargo build -p forgetful-mount)")
    } else if !Path::new("/dev/fuse").exists() {
        Some("/dev/fuse is missing")
    } else {
        None
    };
    if let Some(why) = missing {
        assert!(
            std::env::var_os("CI").is_none(),
            "under CI the power-loss test must run: {why}"
        );
        eprintln!("\n*** SKIPPED: power-loss test of pragma run: {why} ***\n");
        return None;
    }
    Some(tool)
}

/// A forgetful disk mounted until [`Disk::stop`].
struct Disk {
    child: Child,
    mountpoint: PathBuf,
}

impl Disk {
    fn mount(tool: &Path, mountpoint: &Path, extra: &[String]) -> Disk {
        std::fs::create_dir_all(mountpoint).unwrap();
        let mut child = Command::new(tool)
            .arg(mountpoint)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert_eq!(first.trim(), "mounted");
        Disk {
            child,
            mountpoint: mountpoint.to_owned(),
        }
    }

    /// Unmounts (after writing the crash images, if asked); the changing
    /// calls made and whether the power was lost.
    fn stop(mut self) -> (u64, bool) {
        drop(self.child.stdin.take());
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(self.child.wait().unwrap().success());
        let words: Vec<&str> = out.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "calls").unwrap();
        (words[at + 1].parse().unwrap(), words.contains(&"lost"))
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        // A failed test leaves no mount behind: the tool unmounts when its
        // standard input closes.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// `pragma run` of the cell in the disk's directory; its exit code (`None`:
/// killed after the timeout).
fn run_on(disk: &Disk, timeout: Duration) -> Option<i32> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pragma"))
        .args(["run", "cell", "--state", "state"])
        .current_dir(&disk.mountpoint)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every file of the state directory under `root`, with its content; the
/// apply's staging files (`.NAME.pragma-apply`, which a crash mid-apply
/// leaves beside their targets, and the next run removes) only with
/// `staging_too`.
fn state_files_with(root: &Path, staging_too: bool) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>, staging_too: bool) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let staging = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(".pragma-apply"));
            if path.is_dir() {
                walk(root, &path, out, staging_too);
            } else if staging_too || !staging {
                let name = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(name, std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out, staging_too);
    out
}

fn state_files(root: &Path) -> BTreeMap<String, String> {
    state_files_with(root, false)
}

fn as_owned(state: BTreeMap<&str, &str>) -> BTreeMap<String, String> {
    state
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn pragma_run_survives_power_loss_and_every_state_file_stays_whole() {
    let Some(tool) = mount_tool() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The disk at the start: the state and the cell, synced.
    let start = dir.path().join("start");
    for (name, content) in old_state() {
        let path = start.join("state").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    std::fs::write(start.join("cell"), CELL).unwrap();
    let image = |path: &Path| vec!["--image".to_owned(), path.display().to_string()];
    let mountpoint = dir.path().join("disk");

    // The uninterrupted run: its calls and its result.
    let disk = Disk::mount(&tool, &mountpoint, &image(&start));
    assert_eq!(run_on(&disk, Duration::from_secs(120)), Some(0));
    let after = state_files(&mountpoint.join("state"));
    let (calls, _) = disk.stop();
    assert_eq!(after, as_owned(new_state()));

    let seed: u64 = std::env::var("PRAGMA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) * 7919);
    eprintln!("power-loss seed {seed} (PRAGMA_TEST_SEED={seed} runs these crash points again)");
    let mut random = seed.max(1);
    let mut next = move |below: u64| {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        1 + random % below.max(1)
    };
    let points: std::collections::BTreeSet<u64> = (0..24).map(|_| next(calls)).collect();
    let (old, new) = (old_state(), new_state());
    for k in points {
        let images = dir.path().join(format!("images-{k}"));
        let mut args = image(&start);
        args.extend([
            "--lose-power-after".to_owned(),
            k.to_string(),
            "--crash-images".to_owned(),
            images.display().to_string(),
            "--random-images".to_owned(),
            "1".to_owned(),
        ]);
        let disk = Disk::mount(&tool, &mountpoint, &args);
        let first = run_on(&disk, Duration::from_secs(60));
        let (_, lost) = disk.stop();
        assert!(
            lost,
            "call {k} of {calls}: the power did not go ({first:?})"
        );
        let mut outcomes = Vec::new();
        for image_dir in std::fs::read_dir(&images).unwrap() {
            let image_dir = image_dir.unwrap().path();
            let kept = image_dir
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let point = format!("seed {seed}, power lost after call {k} of {calls}, {kept} kept");
            // Every state file is whole: as it was, or as the run left it.
            for (name, content) in state_files(&image_dir.join("state")) {
                let whole = old.get(name.as_str()) == Some(&content.as_str())
                    || new.get(name.as_str()) == Some(&content.as_str());
                assert!(whole, "{point}: {name} holds {content:?}");
            }
            // The cell run again ends as the uninterrupted run did.
            let disk = Disk::mount(&tool, &mountpoint, &image(&image_dir));
            let again = run_on(&disk, Duration::from_secs(120));
            // Nothing the crash left half-done stays in the state.
            let state = state_files_with(&mountpoint.join("state"), true);
            disk.stop();
            assert_eq!(again, Some(0), "{point}");
            assert_eq!(state, as_owned(new.clone()), "{point}");
            outcomes.push(kept);
        }
        eprintln!(
            "call {k} of {calls}: {} disks, each finished",
            outcomes.len()
        );
    }
    let _ = std::io::stderr().flush();
}
