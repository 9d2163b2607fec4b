//! The checkpoint log of each operation: commit, load, fence, retain.
//!
//! # Layout
//!
//! For an operation `OP`, under the store's root:
//!
//! ```text
//! ops/OP/commits/00000000000000000012    record of generation 12 (exclusive create)
//! ops/OP/data/EPOCH-NONCE/PART           the data parts of one commit
//! ```
//!
//! A commit streams its parts into a fresh data directory, then creates the
//! manifest (part names, lengths and CRC-32 checksums, the caller's metadata,
//! and a checksum of the manifest itself) with an exclusive create. Until
//! the manifest exists the commit is invisible, and the manifest is written
//! whole or not at all, so readers see the old checkpoint or the new one.
//!
//! # Fencing
//!
//! Writing to an operation needs a [`Lease`] from [`CheckpointLog::claim`].
//! A claim is itself a record in the sequence of generations, created by
//! the same exclusive create as commits; the lease's epoch is the claim's
//! generation. A commit of generation `g` from epoch `e` is void if a claim
//! lies between them (`e < claim < g`): a newer owner took over before it.
//! Because generations are taken one after another by exclusive creates,
//! every record below a claim existed when the claim was made, so what the
//! new owner resumes from never changes afterwards, and a stale writer
//! finds the claim when it checks after its own create: it reports
//! [`Error::Fenced`] and removes its commit. Readers skip void commits
//! whatever the writer did. Claim records are never deleted.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::error::{Error, Result};
use crate::key::{Key, validate_name};
use crate::store::{Reader, Source, Store, StoreExt};

mod manifest;
mod readers;

use manifest::*;
pub use manifest::{Manifest, Meta, Part, PartInfo};
use readers::*;

/// The right to commit to one operation, from [`CheckpointLog::claim`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    op: String,
    epoch: u64,
}

impl Lease {
    /// The operation.
    pub fn op(&self) -> &str {
        &self.op
    }

    /// The epoch claimed; commits from older epochs are fenced out.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

/// A checkpoint that loading skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The operation.
    pub op: String,
    /// The skipped generation.
    pub generation: u64,
    /// What was wrong with it.
    pub problem: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "skipped checkpoint {} of operation `{}`: {}",
            self.generation, self.op, self.problem
        )
    }
}

/// A verified checkpoint and the newer ones that were skipped to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The checkpoint; read its parts with [`CheckpointLog::open_part`].
    pub manifest: Manifest,
    /// Newer checkpoints that were damaged, half-written or void.
    pub warnings: Vec<Warning>,
}

/// The first claim strictly between `epoch` and `generation`: the owner
/// that took over before a commit of `generation` from `epoch`.
fn voided_by(claims: &BTreeSet<u64>, generation: u64, epoch: u64) -> Option<u64> {
    claims
        .range(epoch.saturating_add(1)..generation)
        .next()
        .copied()
}

/// Everything recorded about an operation, read in one go.
struct Recorded {
    /// The generations of the claims.
    claims: BTreeSet<u64>,
    /// Generation -> the checkpoint's manifest, or why it cannot be read.
    records: BTreeMap<u64, std::result::Result<Manifest, String>>,
}

impl Recorded {
    /// Why a checkpoint cannot be used, before looking at its data.
    fn problem(&self, generation: u64) -> Option<String> {
        match self.records.get(&generation)? {
            Err(problem) => Some(problem.clone()),
            Ok(manifest) => voided_by(&self.claims, generation, manifest.epoch).map(|newer| {
                format!(
                    "written by epoch {} after epoch {newer} had taken over (a fenced-out writer)",
                    manifest.epoch
                )
            }),
        }
    }

    fn latest_valid(&self) -> Option<u64> {
        self.records
            .keys()
            .rev()
            .copied()
            .find(|&g| self.problem(g).is_none())
    }

    /// The newest generation of any record, claims included.
    fn newest(&self) -> Option<u64> {
        let records = self.records.keys().next_back().copied();
        let claims = self.claims.iter().next_back().copied();
        records.max(claims)
    }
}

/// Durable checkpoints of operations in a [`Store`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use pragma_checkpoint::{CheckpointLog, MemoryStore, Part};
///
/// let log = CheckpointLog::new(MemoryStore::new());
/// let lease = log.claim("train-1").await?;
/// let mut weights: &[u8] = b"the model's weights";
/// let meta = serde_json::json!({ "iteration": 4, "score": 0.93 });
/// let committed = log.commit(&lease, meta, vec![Part::new("state", &mut weights)]).await?;
///
/// let loaded = log.load_latest("train-1").await?.expect("a checkpoint");
/// assert_eq!(loaded.manifest.generation(), committed.generation());
/// assert_eq!(loaded.manifest.meta()["score"], 0.93);
/// let mut state = Vec::new();
/// use tokio::io::AsyncReadExt;
/// log.open_part(&loaded.manifest, "state").await?.read_to_end(&mut state).await?;
/// assert_eq!(state, b"the model's weights");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CheckpointLog<S> {
    store: S,
    /// Generations above a lease's epoch already read and found not to be
    /// claims, by operation: records are immutable, so each is read once
    /// per lease instead of at every commit. Shared by clones.
    not_claims: Arc<Mutex<HashMap<String, BTreeSet<u64>>>>,
}

fn ops() -> Result<Key> {
    Key::parse("ops")
}

fn op_key(op: &str) -> Result<Key> {
    ops()?.join(op)
}

fn generation_name(generation: u64) -> String {
    format!("{generation:020}")
}

impl<S: Store> CheckpointLog<S> {
    /// A log over `store`.
    pub fn new(store: S) -> Self {
        CheckpointLog {
            store,
            not_claims: Arc::default(),
        }
    }

    fn known_not_claim(&self, op: &str, generation: u64) -> bool {
        self.not_claims
            .lock()
            .is_ok_and(|known| known.get(op).is_some_and(|g| g.contains(&generation)))
    }

    fn remember_not_claim(&self, op: &str, generation: u64) {
        if let Ok(mut known) = self.not_claims.lock() {
            known.entry(op.to_owned()).or_default().insert(generation);
        }
    }

    /// A deleted generation may be created again (by a stale claimant,
    /// say): it must be read again.
    fn forget_generation(&self, op: &str, generation: u64) {
        if let Ok(mut known) = self.not_claims.lock()
            && let Some(generations) = known.get_mut(op)
        {
            generations.remove(&generation);
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The operations that have anything recorded, in ascending order.
    pub async fn operations(&self) -> Result<Vec<String>> {
        let keys = self.store.list(Some(&ops()?)).await?;
        let names: BTreeSet<String> = keys
            .iter()
            .filter_map(|k| k.names().nth(1).map(str::to_owned))
            .collect();
        Ok(names.into_iter().collect())
    }

    /// The generations that have a record (claims included), ascending.
    async fn generations(&self, op: &str) -> Result<Vec<u64>> {
        let commits = op_key(op)?.join("commits")?;
        Ok(self
            .store
            .list(Some(&commits))
            .await?
            .iter()
            .filter_map(|key| key.names().last().and_then(|n| n.parse::<u64>().ok()))
            .collect())
    }

    /// Reads the record of one generation; `None` if it is gone, a problem
    /// if it does not decode, an error if it cannot be read.
    async fn read_record(
        &self,
        op: &str,
        generation: u64,
    ) -> Result<Option<std::result::Result<Manifest, String>>> {
        let key = op_key(op)?
            .join("commits")?
            .join(&generation_name(generation))?;
        Ok(match self.store.get_bytes(&key).await {
            Ok(bytes) => Some(Manifest::decode(&bytes).and_then(|m| {
                if m.generation == generation && m.op == op {
                    Ok(m)
                } else {
                    Err("the manifest belongs to another record".to_owned())
                }
            })),
            Err(Error::NotFound { .. }) => None, // deleted meanwhile
            // A failed read says nothing of the record: taken for damage,
            // the newest checkpoint would be skipped, or deleted by a
            // retain, for one lost request.
            Err(e) => return Err(e),
        })
    }

    /// The first claim newer than the lease among the records above it
    /// (and below `below`). Reads only the start of the records written
    /// since the lease's own claim: a claim's manifest starts with its kind,
    /// and a checkpoint's may be large.
    async fn newer_claim(&self, lease: &Lease, below: Option<u64>) -> Result<Option<u64>> {
        let commits = op_key(&lease.op)?.join("commits")?;
        for generation in self.generations(&lease.op).await? {
            if generation <= lease.epoch
                || below.is_some_and(|b| generation >= b)
                || self.known_not_claim(&lease.op, generation)
            {
                continue;
            }
            let key = commits.join(&generation_name(generation))?;
            let mut reader = match self.store.get(&key).await {
                Ok(reader) => reader,
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let mut start = [0u8; CLAIM_PREFIX.len()];
            let read = reader.read_exact(&mut start).await.is_ok();
            if read
                && start == CLAIM_PREFIX.as_bytes()
                && let Some(Ok(manifest)) = self.read_record(&lease.op, generation).await?
                && manifest.kind == RecordKind::Claim
            {
                return Ok(Some(generation));
            }
            if read && start != CLAIM_PREFIX.as_bytes() {
                self.remember_not_claim(&lease.op, generation);
            }
        }
        Ok(None)
    }

    fn fenced(&self, lease: &Lease, newer: Option<u64>) -> Result<()> {
        match newer {
            Some(newer) => Err(Error::Fenced {
                op: lease.op.clone(),
                epoch: lease.epoch,
                newer,
            }),
            None => Ok(()),
        }
    }

    /// Everything recorded about `op`: the claims and every checkpoint.
    async fn recorded(&self, op: &str) -> Result<Recorded> {
        let mut claims = BTreeSet::new();
        let mut records = BTreeMap::new();
        for generation in self.generations(op).await? {
            match self.read_record(op, generation).await? {
                None => {}
                Some(Ok(manifest)) if manifest.kind == RecordKind::Claim => {
                    claims.insert(generation);
                }
                Some(record) => {
                    records.insert(generation, record);
                }
            }
        }
        Ok(Recorded { claims, records })
    }

    /// Claims `op` (starting or resuming it): from now on, commits of every
    /// earlier lease are fenced out. The lease's epoch is the claim's
    /// generation.
    pub async fn claim(&self, op: &str) -> Result<Lease> {
        let commits = op_key(op)?.join("commits")?;
        loop {
            let generation = self.generations(op).await?.last().map_or(0, |g| g + 1);
            let claim = Manifest {
                format: FORMAT,
                kind: RecordKind::Claim,
                op: op.to_owned(),
                generation,
                epoch: generation,
                data: String::new(),
                parts: Vec::new(),
                meta: serde_json::Value::Null.into(),
            };
            let key = commits.join(&generation_name(generation))?;
            match self.store.create(&key, &claim.encode()?).await {
                Ok(()) => {
                    return Ok(Lease {
                        op: op.to_owned(),
                        epoch: generation,
                    });
                }
                // Another writer took this generation: read again.
                Err(Error::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Commits a checkpoint: streams the parts, then makes it visible
    /// atomically. Returns its manifest once it is durable.
    ///
    /// Fails with [`Error::Fenced`] if a newer claim was made (nothing is
    /// committed), and cleans up what it wrote on any failure.
    pub async fn commit(
        &self,
        lease: &Lease,
        meta: impl Into<Meta>,
        parts: Vec<Part<'_>>,
    ) -> Result<Manifest> {
        self.commit_as(lease, None, meta.into(), parts).await
    }

    /// Commits a checkpoint as exactly `generation`: fails with
    /// [`Error::Conflict`] (and changes nothing) if that generation is taken.
    /// For writers that know which generation comes next and must not
    /// commit twice.
    pub async fn commit_generation(
        &self,
        lease: &Lease,
        generation: u64,
        meta: impl Into<Meta>,
        parts: Vec<Part<'_>>,
    ) -> Result<Manifest> {
        self.commit_as(lease, Some(generation), meta.into(), parts)
            .await
    }

    async fn commit_as(
        &self,
        lease: &Lease,
        exact_generation: Option<u64>,
        meta: Meta,
        parts: Vec<Part<'_>>,
    ) -> Result<Manifest> {
        let mut names = BTreeSet::new();
        for part in &parts {
            validate_name(part.name)?;
            if !names.insert(part.name) {
                return Err(Error::InvalidName {
                    name: part.name.to_owned(),
                    reason: "part names must be unique within a commit",
                });
            }
        }
        let base = op_key(&lease.op)?;
        self.fenced(lease, self.newer_claim(lease, None).await?)?;

        let data = format!("{:020}-{}", lease.epoch, uuid::Uuid::new_v4().simple());
        let data_dir = base.join("data")?.join(&data)?;
        let mut infos = Vec::with_capacity(parts.len());
        for part in parts {
            let mut hashing = HashingReader::new(part.data);
            let written = self
                .store
                .put(&data_dir.join(part.name)?, &mut hashing)
                .await;
            if let Err(e) = written {
                self.delete_data(&data_dir).await;
                return Err(e);
            }
            infos.push(PartInfo {
                name: part.name.to_owned(),
                len: hashing.len,
                crc32: hashing.hasher.finalize(),
            });
        }

        let next = |generations: &[u64]| generations.last().map_or(0, |g| g + 1);
        let mut generation = match exact_generation {
            Some(generation) => generation,
            None => next(&self.generations(&lease.op).await?),
        };
        loop {
            let manifest = Manifest {
                format: FORMAT,
                kind: RecordKind::Checkpoint,
                op: lease.op.clone(),
                generation,
                epoch: lease.epoch,
                data: data.clone(),
                parts: infos.clone(),
                meta: meta.clone(),
            };
            let record = base.join("commits")?.join(&generation_name(generation))?;
            match self.store.create(&record, &manifest.encode()?).await {
                Ok(()) => {
                    // A claim below this generation (made after the check
                    // above) voids it: take it back and say so.
                    if let Some(newer) = self.newer_claim(lease, Some(generation)).await? {
                        let _ = self.store.delete(&record).await;
                        self.delete_data(&data_dir).await;
                        return self.fenced(lease, Some(newer)).map(|()| manifest);
                    }
                    return Ok(manifest);
                }
                Err(Error::AlreadyExists { .. }) => {
                    // Someone else has this generation: a new owner's claim
                    // (we are fenced), a fenced-out writer's void commit
                    // (take the next one), or a rival: we lost.
                    let newer = self.newer_claim(lease, None).await?;
                    if newer.is_some() {
                        self.delete_data(&data_dir).await;
                        return self.fenced(lease, newer).map(|()| manifest);
                    }
                    let recorded = self.recorded(&lease.op).await?;
                    let winner_is_void = recorded.problem(generation).is_some();
                    if !winner_is_void || exact_generation.is_some() {
                        self.delete_data(&data_dir).await;
                        return Err(Error::Conflict {
                            op: lease.op.clone(),
                            generation,
                        });
                    }
                    generation = recorded.newest().map_or(0, |g| g + 1);
                }
                // The manifest may be there all the same (a request that
                // took effect and whose answer was lost): its data stays.
                // If it is not, the next retain or claim takes the data.
                Err(e) => return Err(e),
            }
        }
    }

    async fn delete_data(&self, dir: &Key) {
        if let Ok(keys) = self.store.list(Some(dir)).await {
            for key in keys {
                if let Err(e) = self.store.delete(&key).await {
                    tracing::warn!(%key, error = %e, "could not delete an unused checkpoint part");
                }
            }
        }
    }

    /// The usable checkpoints of `op`, oldest first (manifests only; the
    /// data is verified when loading).
    pub async fn checkpoints(&self, op: &str) -> Result<Vec<Manifest>> {
        let recorded = self.recorded(op).await?;
        Ok(recorded
            .records
            .iter()
            .filter(|(g, _)| recorded.problem(**g).is_none())
            .filter_map(|(_, m)| m.as_ref().ok().cloned())
            .collect())
    }

    /// Loads the newest checkpoint whose manifest and data verify, skipping
    /// (with a [`Warning`] each, also logged) the newer ones that do not.
    /// `None` if the operation has no usable checkpoint.
    ///
    /// Verification reads every part once; [`open_part`](Self::open_part)
    /// checks again while the caller reads.
    pub async fn load_latest(&self, op: &str) -> Result<Option<Loaded>> {
        let recorded = self.recorded(op).await?;
        let mut warnings = Vec::new();
        for (&generation, record) in recorded.records.iter().rev() {
            let problem = match (recorded.problem(generation), record) {
                (Some(problem), _) => problem,
                (None, Ok(manifest)) => match self.verify(manifest).await {
                    Ok(()) => {
                        return Ok(Some(Loaded {
                            manifest: manifest.clone(),
                            warnings,
                        }));
                    }
                    Err(Error::Damaged { reason, .. }) => reason,
                    Err(e) => return Err(e),
                },
                (None, Err(problem)) => problem.clone(),
            };
            let warning = Warning {
                op: op.to_owned(),
                generation,
                problem,
            };
            tracing::warn!("{warning}");
            warnings.push(warning);
        }
        Ok(None)
    }

    /// Loads one checkpoint by generation (the best one, say), verified.
    pub async fn load(&self, op: &str, generation: u64) -> Result<Manifest> {
        let recorded = self.recorded(op).await?;
        let damaged = |reason: String| Error::Damaged {
            op: op.to_owned(),
            generation,
            reason,
        };
        let manifest = match recorded.records.get(&generation) {
            None => {
                return Err(Error::NotFound {
                    key: format!("checkpoint {generation} of operation `{op}`"),
                });
            }
            Some(Err(problem)) => return Err(damaged(problem.clone())),
            Some(Ok(manifest)) => manifest,
        };
        if let Some(problem) = recorded.problem(generation) {
            return Err(damaged(problem));
        }
        self.verify(manifest).await?;
        Ok(manifest.clone())
    }

    /// Reads every part of a checkpoint and checks lengths and checksums.
    pub async fn verify(&self, manifest: &Manifest) -> Result<()> {
        let mut buffer = vec![0u8; 1 << 20];
        for part in &manifest.parts {
            let mut reader = self.open_part(manifest, &part.name).await?;
            loop {
                match reader.read(&mut buffer).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        return Err(Error::Damaged {
                            op: manifest.op.clone(),
                            generation: manifest.generation,
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Opens one part of a checkpoint. The reader fails with an
    /// `InvalidData` error at the end if the bytes do not match the
    /// manifest's length and checksum; a missing part is [`Error::Damaged`].
    pub async fn open_part(&self, manifest: &Manifest, name: &str) -> Result<Reader> {
        let damaged = |reason: String| Error::Damaged {
            op: manifest.op.clone(),
            generation: manifest.generation,
            reason,
        };
        let info = manifest
            .parts
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::NotFound {
                key: format!("part `{name}` of checkpoint {}", manifest.generation),
            })?;
        let key = op_key(&manifest.op)?
            .join("data")?
            .join(&manifest.data)?
            .join(name)?;
        let inner = match self.store.get(&key).await {
            Ok(inner) => inner,
            Err(Error::NotFound { .. }) => {
                return Err(damaged(format!("part `{name}` is missing")));
            }
            Err(e) => return Err(e),
        };
        Ok(Box::new(VerifyingReader {
            inner: HashingReader::new(inner),
            expected: info.clone(),
        }))
    }

    /// Deletes every checkpoint of the lease's operation except the latest
    /// usable one and the generations in `keep` (the best, say), and data
    /// that no checkpoint uses any more. Call it after a commit returned, so
    /// older checkpoints go only once the newer one is durable. Returns how
    /// many checkpoints were deleted.
    pub async fn retain(&self, lease: &Lease, keep: &[u64]) -> Result<usize> {
        let recorded = self.recorded(&lease.op).await?;
        let newer = recorded.claims.range(lease.epoch + 1..).next().copied();
        self.fenced(lease, newer)?;
        let Some(latest) = recorded.latest_valid() else {
            return Ok(0);
        };
        let base = op_key(&lease.op)?;
        let mut deleted = 0;
        let mut used = BTreeSet::new();
        for (&generation, record) in &recorded.records {
            let usable = recorded.problem(generation).is_none();
            let kept = usable && (generation == latest || keep.contains(&generation));
            if kept || (generation > latest && usable) {
                if let Ok(manifest) = record {
                    used.insert(manifest.data.clone());
                }
                continue;
            }
            // The record goes first: a checkpoint is never visible without
            // its data.
            self.store
                .delete(&base.join("commits")?.join(&generation_name(generation))?)
                .await?;
            self.forget_generation(&lease.op, generation);
            deleted += 1;
        }
        self.delete_unused_data(lease, &used).await?;
        Ok(deleted)
    }

    /// Deletes what interrupted commits of the lease's operation left: the
    /// data of commits that never became visible (a crash of the process
    /// or the machine between a commit's data and its manifest, a manifest
    /// request that failed), and the store's abandoned temporary files
    /// ([`Store::remove_abandoned`]). A new owner calls it after its
    /// [`claim`](Self::claim), and the last commit of an operation after
    /// it; [`retain`](Self::retain) deletes unused data after each commit.
    /// Returns how many objects were deleted.
    pub async fn remove_leftovers(&self, lease: &Lease) -> Result<usize> {
        let temporaries = self
            .store
            .remove_abandoned(Some(&op_key(&lease.op)?))
            .await?;
        let recorded = self.recorded(&lease.op).await?;
        self.fenced(
            lease,
            recorded.claims.range(lease.epoch + 1..).next().copied(),
        )?;
        // Every record that names data, usable or not: a void or damaged
        // record's data goes with its record, in `retain`.
        let used = recorded
            .records
            .values()
            .filter_map(|record| record.as_ref().ok())
            .map(|manifest| manifest.data.clone())
            .collect();
        Ok(temporaries + self.delete_unused_data(lease, &used).await?)
    }

    /// Deletes what writers that are gone left half-written anywhere in the
    /// log ([`Store::remove_abandoned`]): a restarted host calls it once.
    /// Returns how many objects were deleted.
    pub async fn remove_abandoned(&self) -> Result<usize> {
        self.store.remove_abandoned(Some(&ops()?)).await
    }

    /// Deletes the data directories of the lease's epoch or older that are
    /// not in `used`; the number of parts deleted.
    async fn delete_unused_data(&self, lease: &Lease, used: &BTreeSet<String>) -> Result<usize> {
        let mut deleted = 0;
        for key in self
            .store
            .list(Some(&op_key(&lease.op)?.join("data")?))
            .await?
        {
            let Some(dir) = key.names().nth(3) else {
                continue;
            };
            let epoch = dir.split('-').next().and_then(|e| e.parse::<u64>().ok());
            // Data of this epoch or older that no kept checkpoint uses: an
            // interrupted or superseded commit. (A newer epoch's writer may
            // be mid-commit; leave its data alone.)
            if !used.contains(dir) && epoch.is_some_and(|e| e <= lease.epoch) {
                self.store.delete(&key).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_manifest_starts_with_the_prefix_writers_look_for() {
        let claim = Manifest {
            format: FORMAT,
            kind: RecordKind::Claim,
            op: "op".into(),
            generation: 3,
            epoch: 3,
            data: String::new(),
            parts: Vec::new(),
            meta: serde_json::Value::Null.into(),
        };
        let bytes = claim.encode().unwrap();
        assert!(bytes.starts_with(CLAIM_PREFIX.as_bytes()));
        let checkpoint = Manifest {
            kind: RecordKind::Checkpoint,
            ..claim
        };
        assert!(
            !checkpoint
                .encode()
                .unwrap()
                .starts_with(CLAIM_PREFIX.as_bytes())
        );
    }

    #[test]
    fn a_commit_is_void_when_a_claim_lies_between_its_epoch_and_it() {
        let claims = BTreeSet::from([0, 5, 9]);
        assert_eq!(voided_by(&claims, 4, 0), None, "before the next claim");
        assert_eq!(voided_by(&claims, 6, 0), Some(5), "after a newer claim");
        assert_eq!(
            voided_by(&claims, 8, 5),
            None,
            "the current owner's own commits"
        );
        assert_eq!(voided_by(&claims, 12, 5), Some(9));
        assert_eq!(voided_by(&claims, 12, 9), None);
    }
}
