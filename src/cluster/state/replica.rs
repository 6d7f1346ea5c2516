//! The [`Replica`] a worker keeps from the primary's cluster state documents (DESIGN.md §6).

use std::collections::HashMap;

use super::{ClusterState, Kind, PresType, ServerUsers, StateError, SvrLoad, UserInfo};

/// Why [`Replica::apply`] refused a document; the replica keeps its previous
/// complete state in every case.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ReplicaError {
    /// A chunk of a full snapshot that does not follow the previous one (wrong
    /// index, other version or other chunk count); the staged snapshot is dropped
    /// and the next one must start again at chunk 1.
    #[error("<load:state> chunk {chunk} of {chunks} of version {version} is out of order (expected {expected})")]
    OutOfOrder {
        /// Version of the refused chunk.
        version: u64,
        /// Its index.
        chunk: u32,
        /// Its chunk count.
        chunks: u32,
        /// What was expected, e.g. `chunk 1` or `chunk 3 of 5 of version 12`.
        expected: String,
    },
    /// A delta arrived before any complete snapshot.
    #[error("<load:state> delta version {version} arrived before a complete snapshot")]
    DeltaWithoutSnapshot {
        /// Version of the refused delta.
        version: u64,
    },
    /// The body did not parse ([`Replica::apply_xml`]).
    #[error(transparent)]
    Parse(#[from] StateError),
}

/// What the replica knows of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Index of the home in [`Table::ids`].
    home: u32,
    pres_type: PresType,
    resources: u32,
    pres_info: String,
}

/// One version of the cluster state, with the directory indexed by user.
#[derive(Debug, Clone, Default)]
struct Table {
    version: u64,
    servers: Vec<SvrLoad>,
    candidates: Vec<String>,
    active: u32,
    total_users: u64,
    /// Server ids that users are homed on (interned).
    ids: Vec<String>,
    /// Reverse of `ids`.
    id_index: HashMap<String, u32>,
    /// The directory.
    users: HashMap<String, Entry>,
}

impl Table {
    /// A table with the small parts of `doc` and no users.
    fn from_small_parts(doc: &mut ClusterState) -> Table {
        Table {
            version: doc.version,
            servers: std::mem::take(&mut doc.servers),
            candidates: std::mem::take(&mut doc.candidates),
            active: doc.active,
            total_users: doc.total_users,
            ..Table::default()
        }
    }

    /// Replaces the small parts with those of `doc` (a delta).
    fn set_small_parts(&mut self, doc: &mut ClusterState) {
        self.version = doc.version;
        self.servers = std::mem::take(&mut doc.servers);
        self.candidates = std::mem::take(&mut doc.candidates);
        self.active = doc.active;
        self.total_users = doc.total_users;
    }

    /// Index of `server_id`, interning it when new.
    fn intern(&mut self, server_id: String) -> u32 {
        if let Some(&i) = self.id_index.get(&server_id) {
            return i;
        }
        let i = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
        self.ids.push(server_id.clone());
        self.id_index.insert(server_id, i);
        i
    }

    /// Inserts or moves every user of `groups` (the last mention of a user wins).
    fn upsert(&mut self, groups: Vec<ServerUsers>) {
        for group in groups {
            let home = self.intern(group.server_id);
            for user in group.users {
                self.users.insert(
                    user.user_id,
                    Entry {
                        home,
                        pres_type: user.pres_type,
                        resources: user.resources,
                        pres_info: user.pres_info,
                    },
                );
            }
        }
    }
}

/// A staged full snapshot, waiting for its remaining chunks.
#[derive(Debug, Clone)]
struct Staging {
    table: Table,
    chunks: u32,
    next: u32,
}

/// The cluster state a worker keeps from the primary's NOTIFYs (DESIGN §3, §6):
/// the directory (user -> home) with live information, the server loads, the pool
/// and the active number.
///
/// A full snapshot is staged chunk by chunk and replaces the current state only
/// when its last chunk arrives, so the replica always answers from a complete
/// state. Deltas apply on top of the current complete state.
#[derive(Debug, Clone, Default)]
pub struct Replica {
    current: Table,
    complete: bool,
    staging: Option<Staging>,
}

impl Replica {
    /// An empty replica, not complete, version 0.
    pub fn new() -> Replica {
        Replica::default()
    }

    /// Applies one document.
    ///
    /// - A full chunk 1 starts a new snapshot (dropping any staged one); chunk `i > 1`
    ///   must be the next chunk of the staged snapshot (same version and count), else
    ///   [`ReplicaError::OutOfOrder`] and the staged snapshot is dropped. The last
    ///   chunk makes the staged snapshot the current state, whatever its version.
    /// - A delta whose version is above the current version replaces the server list,
    ///   candidates, active and total numbers, moves each listed user to the server
    ///   list it appears in (adding it when new), then drops the `removed` users. A
    ///   delta not newer than the current state is ignored (`Ok`). A delta before any
    ///   complete snapshot is [`ReplicaError::DeltaWithoutSnapshot`]. A staged
    ///   snapshot is left alone.
    pub fn apply(&mut self, mut doc: ClusterState) -> Result<(), ReplicaError> {
        match doc.kind {
            Kind::Full if doc.chunk <= 1 => {
                let mut table = Table::from_small_parts(&mut doc);
                table.upsert(std::mem::take(&mut doc.users));
                self.staging = Some(Staging {
                    table,
                    chunks: doc.chunks.max(1),
                    next: 2,
                });
            }
            Kind::Full => {
                let staged = self.staging.take();
                let expected = match &staged {
                    Some(s) => format!(
                        "chunk {} of {} of version {}",
                        s.next, s.chunks, s.table.version
                    ),
                    None => "chunk 1".to_owned(),
                };
                let mut staged = match staged {
                    Some(s)
                        if s.table.version == doc.version
                            && s.chunks == doc.chunks
                            && s.next == doc.chunk =>
                    {
                        s
                    }
                    _ => {
                        return Err(ReplicaError::OutOfOrder {
                            version: doc.version,
                            chunk: doc.chunk,
                            chunks: doc.chunks,
                            expected,
                        })
                    }
                };
                staged.table.upsert(std::mem::take(&mut doc.users));
                staged.next += 1;
                self.staging = Some(staged);
            }
            Kind::Delta => {
                if !self.complete {
                    return Err(ReplicaError::DeltaWithoutSnapshot {
                        version: doc.version,
                    });
                }
                if doc.version <= self.current.version {
                    return Ok(());
                }
                self.current.set_small_parts(&mut doc);
                self.current.upsert(std::mem::take(&mut doc.users));
                for user in &doc.removed {
                    self.current.users.remove(user);
                }
                return Ok(());
            }
        }
        if let Some(staged) = self.staging.take_if(|s| s.next > s.chunks) {
            self.current = staged.table;
            self.complete = true;
        }
        Ok(())
    }

    /// Parses a NOTIFY body and applies it (see [`Replica::apply`]).
    pub fn apply_xml(&mut self, body: &[u8]) -> Result<(), ReplicaError> {
        self.apply(ClusterState::parse(body)?)
    }

    /// The home server id of `user`, if the directory has it.
    pub fn home(&self, user: &str) -> Option<&str> {
        let entry = self.current.users.get(user)?;
        self.current
            .ids
            .get(usize::try_from(entry.home).ok()?)
            .map(String::as_str)
    }

    /// The server loads, in the order of the last document.
    pub fn servers(&self) -> &[SvrLoad] {
        &self.current.servers
    }

    /// The pool's candidate server URIs.
    pub fn candidates(&self) -> &[String] {
        &self.current.candidates
    }

    /// The active server number.
    pub fn active(&self) -> u32 {
        self.current.active
    }

    /// The total users number announced by the primary.
    pub fn total_users(&self) -> u64 {
        self.current.total_users
    }

    /// Version of the current state (0 before the first complete snapshot).
    pub fn version(&self) -> u64 {
        self.current.version
    }

    /// Number of users in the directory.
    pub fn len(&self) -> usize {
        self.current.users.len()
    }

    /// True when the directory has no user.
    pub fn is_empty(&self) -> bool {
        self.current.users.is_empty()
    }

    /// True once a full snapshot has been received completely.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The current state as a full snapshot, chunk 1 of 1, for the admin API's JSON:
    /// servers sorted by id, user lists by server id and users by user id (so the
    /// output is deterministic); servers without users have no user list.
    pub fn snapshot(&self) -> ClusterState {
        let t = &self.current;
        let mut servers = t.servers.clone();
        servers.sort_by(|a, b| a.id.cmp(&b.id));
        let mut groups: Vec<Vec<UserInfo>> = vec![Vec::new(); t.ids.len()];
        for (user_id, entry) in &t.users {
            if let Some(group) = usize::try_from(entry.home)
                .ok()
                .and_then(|i| groups.get_mut(i))
            {
                group.push(UserInfo {
                    user_id: user_id.clone(),
                    pres_type: entry.pres_type,
                    resources: entry.resources,
                    pres_info: entry.pres_info.clone(),
                });
            }
        }
        let mut users: Vec<ServerUsers> = t
            .ids
            .iter()
            .zip(groups)
            .filter(|(_, g)| !g.is_empty())
            .map(|(id, mut g)| {
                g.sort_by(|a, b| a.user_id.cmp(&b.user_id));
                ServerUsers {
                    server_id: id.clone(),
                    users: g,
                }
            })
            .collect();
        users.sort_by(|a, b| a.server_id.cmp(&b.server_id));
        ClusterState {
            version: t.version,
            kind: Kind::Full,
            chunk: 1,
            chunks: 1,
            servers,
            candidates: t.candidates.clone(),
            active: t.active,
            users,
            total_users: t.total_users,
            removed: Vec::new(),
        }
    }
}
