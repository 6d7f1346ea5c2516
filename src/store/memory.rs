//! In-memory [`Store`] for unit tests: one `Mutex<BTreeMap>` per [`Space`].

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use super::kv::{Result, Space, Store, StoreError};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// A [`Store`] that lives in memory and is lost on drop.
#[derive(Debug, Default)]
pub struct MemoryStore {
    spaces: [Mutex<Map>; Space::ALL.len()],
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self, space: Space) -> Result<MutexGuard<'_, Map>> {
        self.spaces[space as usize]
            .lock()
            .map_err(|_| StoreError::Backend(format!("memory store: {space} lock poisoned")))
    }
}

impl Store for MemoryStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map(space)?.get(key).cloned())
    }

    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<()> {
        self.map(space)?.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn insert_new(&self, space: Space, key: &[u8], value: &[u8]) -> Result<bool> {
        let mut map = self.map(space)?;
        if map.contains_key(key) {
            return Ok(false);
        }
        map.insert(key.to_vec(), value.to_vec());
        Ok(true)
    }

    fn remove(&self, space: Space, key: &[u8]) -> Result<bool> {
        Ok(self.map(space)?.remove(key).is_some())
    }

    fn scan_prefix(&self, space: Space, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self
            .map(space)?
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}
