//! On-disk [`Store`] on sled 0.34: one sled tree per [`Space`], named by [`Space::name`].

use std::path::{Path, PathBuf};

use super::kv::{Result, Space, Store, StoreError};

/// How often a locked database is retried, and how long apart, before `Locked`.
const LOCK_RETRIES: u32 = 10;
const LOCK_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// A [`Store`] in a sled database directory. Only one process may open a directory at a
/// time; a second open fails with [`StoreError::Locked`].
#[derive(Debug, Clone)]
pub struct SledStore {
    db: ::sled::Db,
    trees: [::sled::Tree; Space::ALL.len()],
    dir: PathBuf,
}

impl SledStore {
    /// Opens (creating if needed) the database in `dir`. A lock held by a store of this
    /// process that is being dropped (sled releases it from a background thread) is waited
    /// for briefly before `Locked` is reported.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut attempts = 0;
        let db = loop {
            match ::sled::Config::new().path(dir).open() {
                Ok(db) => break db,
                Err(e) => match open_error(dir, e) {
                    StoreError::Locked(_) if attempts < LOCK_RETRIES => {
                        attempts += 1;
                        std::thread::sleep(LOCK_RETRY_PAUSE);
                    }
                    err => return Err(err),
                },
            }
        };
        let open_tree = |space: Space| {
            db.open_tree(space.name())
                .map_err(|e| backend(format!("open tree {space}"), e))
        };
        let trees = [
            open_tree(Space::ALL[0])?,
            open_tree(Space::ALL[1])?,
            open_tree(Space::ALL[2])?,
            open_tree(Space::ALL[3])?,
            open_tree(Space::ALL[4])?,
            open_tree(Space::ALL[5])?,
            open_tree(Space::ALL[6])?,
        ];
        Ok(SledStore {
            db,
            trees,
            dir: dir.to_path_buf(),
        })
    }

    /// The directory this store was opened in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn tree(&self, space: Space) -> &::sled::Tree {
        &self.trees[space as usize]
    }
}

/// Maps sled's "could not acquire lock" I/O error to [`StoreError::Locked`].
fn open_error(dir: &Path, e: ::sled::Error) -> StoreError {
    match &e {
        ::sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            StoreError::Locked(dir.to_path_buf())
        }
        _ => backend(format!("open {}", dir.display()), e),
    }
}

fn backend(what: impl std::fmt::Display, e: ::sled::Error) -> StoreError {
    StoreError::Backend(format!("sled: {what}: {e}"))
}

impl Store for SledStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.tree(space)
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| backend(format!("get in {space}"), e))
    }

    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree(space)
            .insert(key, value)
            .map(|_| ())
            .map_err(|e| backend(format!("put in {space}"), e))
    }

    fn insert_new(&self, space: Space, key: &[u8], value: &[u8]) -> Result<bool> {
        self.tree(space)
            .compare_and_swap(key, None::<&[u8]>, Some(value))
            .map(|r| r.is_ok())
            .map_err(|e| backend(format!("insert in {space}"), e))
    }

    fn remove(&self, space: Space, key: &[u8]) -> Result<bool> {
        self.tree(space)
            .remove(key)
            .map(|v| v.is_some())
            .map_err(|e| backend(format!("remove in {space}"), e))
    }

    fn scan_prefix(&self, space: Space, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.tree(space)
            .scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()
            .map_err(|e| backend(format!("scan in {space}"), e))
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(|e| backend("flush", e))
    }
}
