//! The in-memory backend, for tests and for embedding.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::{Reader, Source, Store};

/// Objects in a map in this process. Cheap to clone: clones share the
/// objects, as two processes would share a directory.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    objects: Arc<Mutex<BTreeMap<Key, Arc<[u8]>>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn objects(&self) -> MutexGuard<'_, BTreeMap<Key, Arc<[u8]>>> {
        // A panic elsewhere cannot leave the map half-changed: every
        // change is one insert or remove.
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes an object in place, bypassing the contract: for tests that
    /// simulate damage.
    pub fn tamper(&self, key: &Key, change: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        let mut objects = self.objects();
        let object = objects.get_mut(key).ok_or_else(|| Error::NotFound {
            key: key.to_string(),
        })?;
        let mut bytes = object.to_vec();
        change(&mut bytes);
        *object = bytes.into();
        Ok(())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn put(&self, key: &Key, data: Source<'_>) -> Result<u64> {
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes)
            .await
            .map_err(|e| Error::io(format!("reading the data for `{key}`"), e))?;
        let len = bytes.len() as u64;
        self.objects().insert(key.clone(), bytes.into());
        Ok(len)
    }

    async fn create(&self, key: &Key, data: &[u8]) -> Result<()> {
        let mut objects = self.objects();
        if objects.contains_key(key) {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        objects.insert(key.clone(), data.into());
        Ok(())
    }

    async fn get(&self, key: &Key) -> Result<Reader> {
        let bytes = self
            .objects()
            .get(key)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                key: key.to_string(),
            })?;
        Ok(Box::new(std::io::Cursor::new(bytes)))
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.objects().remove(key);
        Ok(())
    }

    async fn list(&self, prefix: Option<&Key>) -> Result<Vec<Key>> {
        Ok(self
            .objects()
            .keys()
            .filter(|key| prefix.is_none_or(|p| key.starts_with(p)))
            .cloned()
            .collect())
    }
}
