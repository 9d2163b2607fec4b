//! Working copies share blocks with their source where the file system
//! can (reflinks), checked on an XFS image mounted for the test.

use std::path::{Path, PathBuf};
use std::process::Command as Std;

use super::*;

/// An XFS file system on a loop device, unmounted when dropped.
struct Xfs {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl Xfs {
    fn mount() -> Result<Xfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = dir.path().join("xfs.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).map_err(|e| e.to_string())?;
        let file = std::fs::File::create(&image).map_err(|e| e.to_string())?;
        file.set_len(400 << 20).map_err(|e| e.to_string())?;
        let run = |command: &mut Std| -> Result<(), String> {
            let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{command:?}: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ))
            }
        };
        run(Std::new("mkfs.xfs").arg("-q").arg(&image))?;
        run(Std::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mount))?;
        Ok(Xfs { mount, _dir: dir })
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Std::new("umount").arg("-l").arg(&self.mount).status();
    }
}

fn run_on(xfs: &Path, cell: &str) -> serde_json::Value {
    std::fs::write(xfs.join("cell"), cell).unwrap();
    let out = pragma()
        .current_dir(xfs)
        .args(["run", "cell", "--state", "state", "--json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

#[test]
fn working_copies_share_blocks_with_their_source() {
    let xfs = match Xfs::mount() {
        Ok(xfs) => xfs,
        Err(why) => {
            use std::os::unix::fs::MetadataExt;
            let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
            let loop_devices = Path::new("/dev/loop-control").exists();
            assert!(
                std::env::var_os("CI").is_none() || !root || !loop_devices,
                "under CI, as root with loop devices, the reflink test must run (.ci/run installs xfsprogs): {why}"
            );
            eprintln!("\n*** SKIPPED: reflink test: cannot mount an XFS image: {why} ***\n");
            return;
        }
    };
    let state = xfs.mount.join("state");
    std::fs::create_dir(&state).unwrap();
    let big: Vec<u8> = (0..32u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(state.join("big"), &big).unwrap();
    // Each iteration scores 1 if its copy of `big` shares all its
    // extents, 0 if any was copied byte by byte.
    let score = "filefrag -v big | awk '/^ *[0-9]+:/ { n++; if ($0 ~ /shared/) s++ } END { print (n > 0 && n == s) ? 1 : 0 }'";
    let parallel = run_on(
        &xfs.mount,
        &format!("#pragma parallel --iterations 3 --min-by \"{score}\"\necho $iteration > n\n"),
    );
    assert_eq!(parallel["best"]["score"], 1.0, "{parallel}");
    let repeat = run_on(
        &xfs.mount,
        &format!(
            "#pragma repeat --iterations 3 --checkpoint-period 1 --min-by \"{score}\"\necho $iteration > n\n"
        ),
    );
    assert_eq!(repeat["best"]["score"], 1.0, "{repeat}");
    assert_eq!(std::fs::read(state.join("big")).unwrap(), big);
}
