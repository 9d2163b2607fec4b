//! The checkpoint crate as executors and backend authors rely on it.

use std::sync::Arc;

use pragma_checkpoint::{
    CheckpointLog, Error, Key, LocalStore, MemoryStore, Part, Store, conformance,
};
use serde_json::json;
use tokio::io::AsyncReadExt;

mod crash;
mod damage;
mod faulty_requests;
mod full_disk;
mod power_loss;
mod s3;

async fn commit_text<S: Store>(
    log: &CheckpointLog<S>,
    lease: &pragma_checkpoint::Lease,
    text: &str,
) -> u64 {
    let mut data = text.as_bytes();
    log.commit(
        lease,
        json!({ "text": text }),
        vec![Part::new("state", &mut data)],
    )
    .await
    .expect("commit")
    .generation()
}

async fn read_part<S: Store>(
    log: &CheckpointLog<S>,
    manifest: &pragma_checkpoint::Manifest,
    name: &str,
) -> Vec<u8> {
    let mut bytes = Vec::new();
    log.open_part(manifest, name)
        .await
        .expect("open part")
        .read_to_end(&mut bytes)
        .await
        .expect("read part");
    bytes
}

mod backends {
    use super::*;

    #[tokio::test]
    async fn memory_store_meets_the_contract() {
        conformance::run_all(&MemoryStore::new()).await.unwrap();
    }

    #[tokio::test]
    async fn local_store_meets_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        conformance::run_all(&LocalStore::new(dir.path()).unwrap())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn wrappers_meet_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStore::new(dir.path()).unwrap();
        conformance::run_all(&Arc::new(local.clone()))
            .await
            .unwrap();
        let boxed: Box<dyn Store> = Box::new(MemoryStore::new());
        conformance::run_all(&boxed).await.unwrap();
        conformance::run_all(&&local).await.unwrap();
        let shared: Arc<dyn Store> = Arc::new(MemoryStore::new());
        conformance::run_all(&shared).await.unwrap();
    }

    /// A store whose `create` replaces an object that is there.
    #[derive(Debug, Default)]
    struct Overwriting(MemoryStore);

    #[async_trait::async_trait]
    impl Store for Overwriting {
        async fn put(
            &self,
            key: &Key,
            data: pragma_checkpoint::Source<'_>,
        ) -> pragma_checkpoint::Result<u64> {
            self.0.put(key, data).await
        }
        async fn create(&self, key: &Key, data: &[u8]) -> pragma_checkpoint::Result<()> {
            pragma_checkpoint::StoreExt::put_bytes(&self.0, key, data)
                .await
                .map(drop)
        }
        async fn get(&self, key: &Key) -> pragma_checkpoint::Result<pragma_checkpoint::Reader> {
            self.0.get(key).await
        }
        async fn delete(&self, key: &Key) -> pragma_checkpoint::Result<()> {
            self.0.delete(key).await
        }
        async fn list(&self, prefix: Option<&Key>) -> pragma_checkpoint::Result<Vec<Key>> {
            self.0.list(prefix).await
        }
    }

    #[tokio::test]
    async fn a_store_that_breaks_the_contract_fails_it_with_the_check_named() {
        let found = conformance::run_all(&Overwriting::default())
            .await
            .unwrap_err();
        assert!(found.0.starts_with("exclusive create: "), "{found}");
    }

    #[tokio::test]
    async fn local_files_are_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let log = CheckpointLog::new(LocalStore::new(&root).unwrap());
        let lease = log.claim("op").await.unwrap();
        commit_text(&log, &lease, "secret").await;
        let mut checked = 0;
        let mut pending = vec![root.clone()];
        while let Some(path) = pending.pop() {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            if path.is_dir() {
                assert_eq!(mode, 0o700, "{}", path.display());
                pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else {
                assert_eq!(mode, 0o600, "{}", path.display());
                checked += 1;
            }
        }
        assert!(checked >= 3, "epoch, manifest and part files");
    }

    #[tokio::test]
    async fn leftover_temporary_files_are_invisible_and_can_be_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("ops/x")).unwrap();
        std::fs::write(dir.path().join("ops/x/.state.123.tmp"), b"torn").unwrap();
        assert!(store.list(None).await.unwrap().is_empty());
        assert_eq!(store.remove_temporary_files().unwrap(), 1);
    }

    #[tokio::test]
    async fn only_the_temporaries_of_writers_that_are_gone_are_removed() {
        use pragma_checkpoint::{FileSystem, OsFileSystem};
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let ops = dir.path().join("ops/x");
        std::fs::create_dir_all(&ops).unwrap();
        let boot = OsFileSystem.boot();
        let (host, this_boot) = boot.split_once('.').unwrap();
        let (boot_id, _namespace) = this_boot.split_once('-').unwrap();
        // A process that is gone: a child that ran and was reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let named = |writer: &str| format!(".state.{writer}.0123abcd.tmp");
        let files = [
            (named(&format!("{boot}.{}", std::process::id())), true), // this process
            (named(&format!("{boot}.{gone}")), false),                // a crashed writer
            (named(&format!("{host}.00000000.1")), false),            // an earlier boot
            (named("other-host.00000000.1"), true),                   // another machine
            (named(&format!("{host}.{boot_id}-1.{gone}")), true),     // another namespace
            (named(&format!("{host}.unknown.{gone}")), true),         // cannot be judged
            (".state.123.tmp".to_owned(), true),                      // not ours to judge
        ];
        for (name, _) in &files {
            std::fs::write(ops.join(name), b"torn").unwrap();
        }
        assert_eq!(store.remove_abandoned_temporaries(None).await.unwrap(), 2);
        for (name, kept) in &files {
            assert_eq!(ops.join(name).exists(), *kept, "{name}");
        }
    }
}

mod names {
    use super::*;

    #[tokio::test]
    async fn nothing_a_user_names_reaches_outside_the_root() {
        let log = CheckpointLog::new(MemoryStore::new());
        for op in [
            "..",
            ".",
            "../x",
            "a/b",
            "/etc",
            "a\0b",
            "",
            "a b",
            "a\\b",
            &"x".repeat(200),
        ] {
            let err = log.claim(op).await.unwrap_err();
            assert!(matches!(err, Error::InvalidName { .. }), "`{op}`: {err}");
        }
        let lease = log.claim("ok").await.unwrap();
        for part in ["..", "x/y", ".hidden", ""] {
            let mut data: &[u8] = b"";
            let err = log
                .commit(&lease, json!({}), vec![Part::new(part, &mut data)])
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::InvalidName { .. }),
                "part `{part}`: {err}"
            );
        }
        assert!(Key::parse("ops/../../etc/passwd").is_err());
    }

    #[tokio::test]
    async fn the_error_says_what_is_allowed() {
        let err = pragma_checkpoint::validate_name("../etc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid name `../etc`: a name cannot start with `.` (that includes `.` and `..`)"
        );
        let err = pragma_checkpoint::validate_name("a/b").unwrap_err();
        assert!(err.to_string().contains("no separators"), "{err}");
    }

    #[tokio::test]
    async fn duplicate_part_names_are_refused() {
        let log = CheckpointLog::new(MemoryStore::new());
        let lease = log.claim("op").await.unwrap();
        let (mut a, mut b): (&[u8], &[u8]) = (b"1", b"2");
        let err = log
            .commit(
                &lease,
                json!({}),
                vec![Part::new("s", &mut a), Part::new("s", &mut b)],
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("unique"), "{err}");
    }
}

mod log {
    use super::*;

    #[tokio::test]
    async fn parts_and_metadata_come_back() {
        let log = CheckpointLog::new(MemoryStore::new());
        let lease = log.claim("op").await.unwrap();
        let (mut state, mut stdout): (&[u8], &[u8]) = (b"weights", b"epoch 1 done\n");
        let meta = json!({ "iteration": 7, "score": 0.93, "scheduler": { "done": 8 } });
        log.commit(
            &lease,
            meta.clone(),
            vec![
                Part::new("state", &mut state),
                Part::new("stdout", &mut stdout),
            ],
        )
        .await
        .unwrap();
        let loaded = log.load_latest("op").await.unwrap().unwrap();
        assert_eq!(loaded.manifest.meta(), &meta);
        assert_eq!(loaded.manifest.bytes(), 20);
        assert_eq!(read_part(&log, &loaded.manifest, "state").await, b"weights");
        assert_eq!(
            read_part(&log, &loaded.manifest, "stdout").await,
            b"epoch 1 done\n"
        );
        assert!(matches!(
            log.open_part(&loaded.manifest, "nope").await,
            Err(Error::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn an_operation_without_checkpoints_loads_none() {
        let log = CheckpointLog::new(MemoryStore::new());
        assert!(log.load_latest("fresh").await.unwrap().is_none());
        assert!(log.operations().await.unwrap().is_empty());
        log.claim("fresh").await.unwrap();
        assert_eq!(log.operations().await.unwrap(), vec!["fresh"]);
    }

    #[tokio::test]
    async fn retain_keeps_the_latest_and_the_named_and_drops_the_data() {
        let store = MemoryStore::new();
        let log = CheckpointLog::new(store.clone());
        let lease = log.claim("op").await.unwrap();
        for i in 0..5 {
            commit_text(&log, &lease, &format!("state {i}")).await;
        }
        // Generation 0 is the claim; the states are generations 1 to 5.
        assert_eq!(log.retain(&lease, &[2]).await.unwrap(), 3);
        let kept: Vec<u64> = log
            .checkpoints("op")
            .await
            .unwrap()
            .iter()
            .map(|m| m.generation())
            .collect();
        assert_eq!(kept, vec![2, 5]);
        let data = store
            .list(Some(&Key::parse("ops/op/data").unwrap()))
            .await
            .unwrap();
        assert_eq!(
            data.len(),
            2,
            "only the kept checkpoints' parts remain: {data:?}"
        );
        let best = log.load("op", 2).await.unwrap();
        assert_eq!(read_part(&log, &best, "state").await, b"state 1");
    }

    /// A store in which a new owner claims the operation right after the
    /// old owner checked the claims and chose its generation, just before
    /// it creates its record.
    #[derive(Debug)]
    struct Race {
        inner: MemoryStore,
        armed: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl Store for Race {
        async fn put(
            &self,
            key: &Key,
            data: pragma_checkpoint::Source<'_>,
        ) -> pragma_checkpoint::Result<u64> {
            self.inner.put(key, data).await
        }
        async fn create(&self, key: &Key, data: &[u8]) -> pragma_checkpoint::Result<()> {
            use std::sync::atomic::Ordering::SeqCst;
            if key.as_str().contains("/commits/") && self.armed.swap(false, SeqCst) {
                CheckpointLog::new(self.inner.clone()).claim("op").await?;
            }
            self.inner.create(key, data).await
        }
        async fn get(&self, key: &Key) -> pragma_checkpoint::Result<pragma_checkpoint::Reader> {
            self.inner.get(key).await
        }
        async fn delete(&self, key: &Key) -> pragma_checkpoint::Result<()> {
            self.inner.delete(key).await
        }
        async fn list(&self, prefix: Option<&Key>) -> pragma_checkpoint::Result<Vec<Key>> {
            self.inner.list(prefix).await
        }
    }

    #[tokio::test]
    async fn a_claim_in_the_middle_of_a_commit_fences_it_out() {
        let inner = MemoryStore::new();
        let race = Race {
            inner: inner.clone(),
            armed: false.into(),
        };
        let old_log = CheckpointLog::new(&race);
        let old = old_log.claim("op").await.unwrap();
        let first = commit_text(&old_log, &old, "by the old owner").await;
        race.armed.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut data: &[u8] = b"late";
        let late = old_log
            .commit(&old, json!({}), vec![Part::new("state", &mut data)])
            .await;
        // The new owner's claim took the generation the old owner chose.
        assert!(
            matches!(late, Err(Error::Fenced { epoch: 0, newer, .. }) if newer == first + 1),
            "{late:?}"
        );
        let log = CheckpointLog::new(inner.clone());
        let loaded = log.load_latest("op").await.unwrap().unwrap();
        assert_eq!(loaded.manifest.generation(), first);
        assert!(loaded.warnings.is_empty());
        assert_eq!(
            inner
                .list(Some(&Key::parse("ops/op/data").unwrap()))
                .await
                .unwrap()
                .len(),
            1,
            "the fenced commit left no data behind"
        );
    }

    #[tokio::test]
    async fn claims_count_up_and_old_leases_cannot_retain() {
        let log = CheckpointLog::new(MemoryStore::new());
        let first = log.claim("op").await.unwrap();
        let second = log.claim("op").await.unwrap();
        assert_eq!((first.epoch(), second.epoch()), (0, 1));
        let err = log.retain(&first, &[]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "operation `op`: this writer holds epoch 0, but epoch 1 has been claimed since \
             (the operation was resumed elsewhere); its commit was rejected and changed nothing"
        );
    }
}
