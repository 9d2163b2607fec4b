//! Damaged checkpoints: flipped bytes, truncated or missing parts, broken
//! manifests. Loading falls back to the previous checkpoint and says why.

use super::*;

fn setup() -> (tempfile::TempDir, CheckpointLog<LocalStore>) {
    let dir = tempfile::tempdir().unwrap();
    let log = CheckpointLog::new(LocalStore::new(dir.path()).unwrap());
    (dir, log)
}

/// Claims the operation (generation 0) and commits generations 1 and 2;
/// returns the path of generation 2's part and of its manifest.
async fn two_checkpoints(
    dir: &std::path::Path,
    log: &CheckpointLog<LocalStore>,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let lease = log.claim("op").await.unwrap();
    commit_text(log, &lease, "older, intact").await;
    commit_text(log, &lease, "newer, about to be damaged").await;
    let manifest = log.load("op", 2).await.unwrap();
    let data_dirs: Vec<_> = std::fs::read_dir(dir.join("ops/op/data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let part = data_dirs
        .iter()
        .map(|d| d.join("state"))
        .find(|p| std::fs::read(p).unwrap() == b"newer, about to be damaged")
        .unwrap();
    assert_eq!(manifest.generation(), 2);
    (part, dir.join("ops/op/commits/00000000000000000002"))
}

async fn falls_back(log: &CheckpointLog<LocalStore>, expected_problem: &str) {
    let loaded = log
        .load_latest("op")
        .await
        .unwrap()
        .expect("the older checkpoint");
    assert_eq!(loaded.manifest.generation(), 1);
    assert_eq!(
        read_part(log, &loaded.manifest, "state").await,
        b"older, intact"
    );
    assert_eq!(loaded.warnings.len(), 1);
    let warning = loaded.warnings[0].to_string();
    assert!(
        warning.starts_with("skipped checkpoint 2 of operation `op`: "),
        "{warning}"
    );
    assert!(warning.contains(expected_problem), "{warning}");
    assert!(matches!(
        log.load("op", 2).await,
        Err(Error::Damaged { generation: 2, .. })
    ));
}

#[tokio::test]
async fn a_flipped_byte_in_a_part() {
    let (dir, log) = setup();
    let (part, _) = two_checkpoints(dir.path(), &log).await;
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[3] ^= 0x40;
    std::fs::write(&part, bytes).unwrap();
    falls_back(&log, "does not match its manifest").await;
}

#[tokio::test]
async fn a_truncated_part() {
    let (dir, log) = setup();
    let (part, _) = two_checkpoints(dir.path(), &log).await;
    let file = std::fs::OpenOptions::new().write(true).open(&part).unwrap();
    file.set_len(5).unwrap();
    falls_back(&log, "5 bytes").await;
}

#[tokio::test]
async fn a_part_grown_by_garbage() {
    let (dir, log) = setup();
    let (part, _) = two_checkpoints(dir.path(), &log).await;
    let mut bytes = std::fs::read(&part).unwrap();
    bytes.extend_from_slice(b"garbage");
    std::fs::write(&part, bytes).unwrap();
    falls_back(&log, "does not match its manifest").await;
}

#[tokio::test]
async fn a_missing_part() {
    let (dir, log) = setup();
    let (part, _) = two_checkpoints(dir.path(), &log).await;
    std::fs::remove_file(&part).unwrap();
    falls_back(&log, "part `state` is missing").await;
}

#[tokio::test]
async fn a_damaged_manifest() {
    let (dir, log) = setup();
    let (_, manifest) = two_checkpoints(dir.path(), &log).await;
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("\"generation\":2", "\"generation\":7"),
    )
    .unwrap();
    falls_back(&log, "checksum does not match").await;
}

#[tokio::test]
async fn a_half_written_manifest() {
    let (dir, log) = setup();
    let (_, manifest) = two_checkpoints(dir.path(), &log).await;
    let text = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &text[..text.len() / 2]).unwrap();
    falls_back(&log, "no checksum line").await;
}

#[tokio::test]
async fn reading_a_part_damaged_after_loading_fails_loudly() {
    let (dir, log) = setup();
    let (part, _) = two_checkpoints(dir.path(), &log).await;
    let loaded = log.load_latest("op").await.unwrap().unwrap();
    std::fs::write(&part, b"newer, about to be DAMAGED").unwrap();
    let mut bytes = Vec::new();
    let err = log
        .open_part(&loaded.manifest, "state")
        .await
        .unwrap()
        .read_to_end(&mut bytes)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}
