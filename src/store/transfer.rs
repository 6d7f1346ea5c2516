//! A user's record in and out of a store (DESIGN.md §3, §7): export for the wire
//! ([`UserRecord`]), import at the home or the primary, and the three-way merge of a moved
//! user's hand-over.
//!
//! Import policy: the primary's store is the durable record of accounts, rosters and private
//! storage, and every home writes its user's changes through to it (`user-update`) before
//! answering the client. So both directions use [`import_authoritative`]: the home takes the
//! primary's record whole at placement (`redirection-usr-addr`), and the primary takes the
//! home's whole on a write-through. A copy a home kept from an earlier stay is therefore
//! replaced, never merged: whatever the user changed there already reached the primary.
//! [`import`] (credentials replaced, roster and private storage only where the target has
//! none) is for a target whose own copy may be newer than the source's.

use std::collections::BTreeMap;

use super::kv::{Result, Space, Store};
use super::records::decode_roster;
use crate::cluster::record::UserRecord;
use crate::xmpp::roster::{merge3_map, Roster};

fn private_prefix(user: &str) -> Vec<u8> {
    let mut p = user.as_bytes().to_vec();
    p.push(0);
    p
}

/// Reads `user`'s record from `store`; `None` when there is no account.
pub fn export(store: &dyn Store, user: &str) -> Result<Option<UserRecord>> {
    let Some(account) = store.get(Space::Accounts, user.as_bytes())? else {
        return Ok(None);
    };
    let prefix = private_prefix(user);
    let private = store
        .scan_prefix(Space::Private, &prefix)?
        .into_iter()
        .map(|(k, v)| (k[prefix.len()..].to_vec(), v))
        .collect();
    Ok(Some(UserRecord {
        account: Some(account),
        roster: store.get(Space::Rosters, user.as_bytes())?,
        private,
    }))
}

/// Writes `record` for `user` without overwriting a roster or private storage already
/// there; credentials are replaced (see the module doc for when this is the right policy).
pub fn import(store: &dyn Store, user: &str, record: &UserRecord) -> Result<()> {
    if let Some(account) = &record.account {
        store.put(Space::Accounts, user.as_bytes(), account)?;
    }
    if let Some(roster) = &record.roster {
        store.insert_new(Space::Rosters, user.as_bytes(), roster)?;
    }
    let prefix = private_prefix(user);
    if store.scan_prefix(Space::Private, &prefix)?.is_empty() {
        for (k, v) in &record.private {
            let mut key = prefix.clone();
            key.extend_from_slice(k);
            store.put(Space::Private, &key, v)?;
        }
    }
    Ok(())
}

/// Writes `record` for `user` replacing what is there: a home's write-through (`user-update`)
/// at the primary, and the primary's record at the home when the user is placed there
/// (DESIGN.md §3).
pub fn import_authoritative(store: &dyn Store, user: &str, record: &UserRecord) -> Result<()> {
    if let Some(account) = &record.account {
        store.put(Space::Accounts, user.as_bytes(), account)?;
    }
    if let Some(roster) = &record.roster {
        store.put(Space::Rosters, user.as_bytes(), roster)?;
    }
    let prefix = private_prefix(user);
    for (k, _) in store.scan_prefix(Space::Private, &prefix)? {
        store.remove(Space::Private, &k)?;
    }
    for (k, v) in &record.private {
        let mut key = prefix.clone();
        key.extend_from_slice(k);
        store.put(Space::Private, &key, v)?;
    }
    Ok(())
}

/// What [`merge_in`] found: the roster as the new home had it and as it should be now.
#[derive(Debug)]
pub struct Merged {
    /// The new home's roster before the merge.
    pub before: Roster,
    /// The merged roster (equal to `before` when the old home changed nothing in it).
    pub after: Roster,
    /// The account or private storage changed (already written).
    pub other_changed: bool,
}

/// Merges what the old home of a moved user ended with (`theirs`) into this node's copy,
/// given the copy the move started from (`base`); see [`Roster::merge3`] for the rule. The
/// account and private storage are written here; the roster is returned for the caller to
/// save, since its caches and watchers follow it. A user unknown here changes nothing.
pub fn merge_in(
    store: &dyn Store,
    user: &str,
    base: &UserRecord,
    theirs: &UserRecord,
) -> Result<Merged> {
    let ours = export(store, user)?.unwrap_or_default();
    let before = decode_roster(user, ours.roster.as_deref())?;
    if ours.account.is_none() {
        return Ok(Merged {
            after: before.clone(),
            before,
            other_changed: false,
        });
    }
    let after = Roster::merge3(
        &decode_roster(user, base.roster.as_deref())?,
        &decode_roster(user, theirs.roster.as_deref())?,
        &before,
    );
    let mut other_changed = false;
    if let Some(account) = &theirs.account {
        if theirs.account != base.account && ours.account == base.account {
            store.put(Space::Accounts, user.as_bytes(), account)?;
            other_changed = true;
        }
    }
    let map =
        |r: &UserRecord| -> BTreeMap<Vec<u8>, Vec<u8>> { r.private.iter().cloned().collect() };
    let ours_private = map(&ours);
    let private = merge3_map(&map(base), &map(theirs), &ours_private);
    let prefix = private_prefix(user);
    let full = |k: &[u8]| [prefix.as_slice(), k].concat();
    for (k, v) in &private {
        if ours_private.get(k) != Some(v) {
            store.put(Space::Private, &full(k), v)?;
            other_changed = true;
        }
    }
    for k in ours_private.keys().filter(|k| !private.contains_key(*k)) {
        store.remove(Space::Private, &full(k))?;
        other_changed = true;
    }
    Ok(Merged {
        before,
        after,
        other_changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::record::{decode, encode};
    use crate::store::MemoryStore;

    #[test]
    fn a_record_moves_with_credentials_roster_and_private_storage() {
        let primary = MemoryStore::new();
        primary.put(Space::Accounts, b"alice", b"acct").unwrap();
        primary.put(Space::Rosters, b"alice", b"roster").unwrap();
        primary
            .put(Space::Private, b"alice\0ns:a", b"<a/>")
            .unwrap();
        primary.put(Space::Private, b"alicex\0ns:a", b"no").unwrap();
        let rec = export(&primary, "alice").unwrap().unwrap();
        assert_eq!(rec.private, vec![(b"ns:a".to_vec(), b"<a/>".to_vec())]);
        let rec = decode(&encode(&rec)).unwrap();

        let home = MemoryStore::new();
        home.put(Space::Rosters, b"alice", b"newer").unwrap();
        import(&home, "alice", &rec).unwrap();
        assert_eq!(
            home.get(Space::Accounts, b"alice").unwrap().unwrap(),
            b"acct"
        );
        // The home's own roster is newer than the primary's copy: kept.
        assert_eq!(
            home.get(Space::Rosters, b"alice").unwrap().unwrap(),
            b"newer"
        );
        assert_eq!(
            home.get(Space::Private, b"alice\0ns:a").unwrap().unwrap(),
            b"<a/>"
        );
        assert!(export(&primary, "bob").unwrap().is_none());
        assert!(decode(b"{nope").is_err());
    }

    #[test]
    fn an_authoritative_import_replaces_a_stale_copy_whole() {
        let primary = MemoryStore::new();
        primary.put(Space::Accounts, b"alice", b"acct").unwrap();
        primary.put(Space::Rosters, b"alice", b"current").unwrap();
        primary
            .put(Space::Private, b"alice\0ns:a", b"<a/>")
            .unwrap();
        let rec = export(&primary, "alice").unwrap().unwrap();

        // The home kept a copy from the user's earlier stay; since then the user changed
        // things on another home, which wrote them through to the primary.
        let home = MemoryStore::new();
        home.put(Space::Rosters, b"alice", b"stale").unwrap();
        home.put(Space::Private, b"alice\0ns:old", b"<old/>")
            .unwrap();
        home.put(Space::Private, b"alicex\0ns:old", b"other")
            .unwrap();
        import_authoritative(&home, "alice", &rec).unwrap();
        assert_eq!(export(&home, "alice").unwrap().unwrap(), rec);
        // Another user's entries sharing the prefix are untouched.
        assert_eq!(
            home.get(Space::Private, b"alicex\0ns:old")
                .unwrap()
                .unwrap(),
            b"other"
        );
    }

    #[test]
    fn a_hand_over_merges_roster_and_private_storage_changed_at_the_old_home() {
        use crate::store::Records;
        use crate::xmpp::subscription::{SubState, Subscription};
        let primary = MemoryStore::new();
        primary.put(Space::Accounts, b"alice", b"acct").unwrap();
        primary.put_roster("alice", &Roster::default()).unwrap();
        primary.private_put("alice", "ns:a", "<a/>").unwrap();
        let base = export(&primary, "alice").unwrap().unwrap();
        let home = MemoryStore::new();
        import_authoritative(&home, "alice", &base).unwrap();

        // The old home, after the record was taken: a request to bob, storage changed.
        let old = MemoryStore::new();
        import_authoritative(&old, "alice", &base).unwrap();
        let mut r = Roster::default();
        r.apply_state("bob@x", SubState::of(Subscription::None, true, false));
        old.put_roster("alice", &r).unwrap();
        old.private_put("alice", "ns:a", "<a2/>").unwrap();
        old.private_put("alice", "ns:b", "<b/>").unwrap();
        let theirs = export(&old, "alice").unwrap().unwrap();
        // The new home meanwhile: carol asked alice.
        let mut ours = Roster::default();
        ours.apply_state("carol@x", SubState::of(Subscription::None, false, true));
        home.put_roster("alice", &ours).unwrap();

        let m = merge_in(&home, "alice", &base, &theirs).unwrap();
        assert_eq!(m.before, ours);
        assert!(m.after.state("bob@x").pending_out);
        assert!(m.after.state("carol@x").pending_in);
        assert!(m.other_changed);
        assert_eq!(
            home.private_get("alice", "ns:a").unwrap().as_deref(),
            Some("<a2/>")
        );
        assert_eq!(
            home.private_get("alice", "ns:b").unwrap().as_deref(),
            Some("<b/>")
        );
        // The same hand-over again changes nothing more.
        home.put_roster("alice", &m.after).unwrap();
        let again = merge_in(&home, "alice", &base, &theirs).unwrap();
        assert_eq!(again.before, again.after);
        // A user this node does not know is left alone.
        let m = merge_in(&home, "nobody", &base, &theirs).unwrap();
        assert_eq!(m.before, m.after);
        assert!(!m.other_changed);
    }
}
