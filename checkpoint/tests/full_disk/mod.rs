//! A commit that fills the disk fails clearly and leaves the previous
//! checkpoint loadable. Needs a small tmpfs, so it runs as root; elsewhere
//! it says loudly that it was skipped.

use super::*;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn small_tmpfs(dir: &std::path::Path) -> Option<Mount> {
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"])
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Some(Mount(dir.to_owned())),
        _ => None,
    }
}

#[tokio::test]
async fn a_full_disk_fails_the_commit_and_keeps_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = small_tmpfs(dir.path()) else {
        eprintln!(
            "\n*** SKIPPED: full-disk test: cannot mount a 4 MiB tmpfs here (needs root) ***\n"
        );
        return;
    };
    let log = CheckpointLog::new(LocalStore::new(dir.path().join("store")).unwrap());
    let lease = log.claim("op").await.unwrap();
    commit_text(&log, &lease, "fits").await;

    let big = vec![7u8; 8 << 20];
    let mut data: &[u8] = &big;
    let err = log
        .commit(&lease, json!({}), vec![Part::new("state", &mut data)])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StorageFull { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("no space left while writing "),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("(the previous checkpoint is intact)"),
        "{err}"
    );

    let loaded = log.load_latest("op").await.unwrap().unwrap();
    assert_eq!(loaded.manifest.generation(), 1);
    assert_eq!(read_part(&log, &loaded.manifest, "state").await, b"fits");
    // The failed commit cleaned up after itself: the space is free again.
    let mut small: &[u8] = b"fits again";
    log.commit(&lease, json!({}), vec![Part::new("state", &mut small)])
        .await
        .unwrap();
    let parts = log
        .store()
        .list(Some(&Key::parse("ops/op/data").unwrap()))
        .await
        .unwrap();
    assert_eq!(
        parts.len(),
        2,
        "only the two committed checkpoints' parts remain: {parts:?}"
    );
}
