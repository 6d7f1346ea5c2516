//! Event state publications of one presentity for one event package, as an Event State
//! Compositor keeps them: RFC 3903 §4 (initial / refresh / modify / remove, Table 1 of
//! §4.1) and §6 (processing PUBLISH: SIP-If-Match lookup and 412, expiry, entity-tags).
//!
//! Entity-tags are renewed on every successful PUBLISH: "For each successful PUBLISH
//! request, the ESC will generate and assign an entity-tag and return it in the SIP-ETag
//! header field of the 2xx response" (RFC 3903 §4.1), so a refresh or modify retires the
//! tag it matched.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;

/// How many fresh tags [`Publications::publish`] asks for before giving up when the
/// generator keeps returning tags that are already live.
const TAG_ATTEMPTS: usize = 4;

/// One live publication: the entity-tag that names it, its state and when it lapses.
#[derive(Debug, Clone)]
struct Entry<T> {
    etag: String,
    body: T,
    expires_at: Instant,
}

/// The publications of one presentity for one event package; body type generic (the caller uses
/// a PIDF document). Entity tags are fresh random strings (≥ 64 bits); a new tag is issued on every
/// successful PUBLISH including refresh and modify (RFC 3903 §4.1 — check the text and cite it).
#[derive(Debug, Clone)]
pub struct Publications<T> {
    /// In order of initial publication; refresh and modify update in place.
    entries: Vec<Entry<T>>,
}

/// The outcome of a successful PUBLISH: the SIP-ETag and Expires of the 200 OK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Value for the SIP-ETag header; the client's next SIP-If-Match.
    pub etag: String,
    /// Value for the Expires header (as granted by the caller).
    pub expires: u32,
}

/// Why a PUBLISH was refused (RFC 3903 §6); the doc of each variant gives the status code.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// 412 Conditional Request Failed
    #[error("unknown entity-tag")]
    UnknownEtag,
    /// 400: an initial PUBLISH without a body
    #[error("initial PUBLISH without a body")]
    MissingBody,
    /// 400: Expires 0 without SIP-If-Match (there is nothing to remove).
    #[error("Expires 0 without SIP-If-Match")]
    RemoveWithoutEtag,
    /// 400: SIP-If-Match is empty or holds more than one entity-tag (RFC 3903 §6).
    #[error("SIP-If-Match must hold exactly one entity-tag")]
    BadIfMatch,
    /// 500: the tag generator kept returning live tags, so no unique SIP-ETag could be issued.
    #[error("could not generate a unique SIP-ETag")]
    TagCollision,
}

impl<T> Default for Publications<T> {
    fn default() -> Self {
        Publications {
            entries: Vec::new(),
        }
    }
}

impl<T> Publications<T> {
    /// An empty set, for a presentity nobody has published for yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One PUBLISH: `if_match` = SIP-If-Match, `body` = parsed body if any, `expires` already granted
    /// (0 = remove). Initial (no if_match, body) / refresh (if_match, no body) / modify (if_match,
    /// body) / remove (if_match, expires 0). Returns the new tag (None after a removal) and the
    /// granted expiry. `now` is the current Instant; `new_tag` produces fresh tags (tests pass a counter).
    ///
    /// The request is atomic (RFC 3903 §6): on error nothing changes except that publications
    /// already expired at `now` are dropped. A removal that carries a body removes anyway.
    pub fn publish(
        &mut self,
        if_match: Option<&str>,
        body: Option<T>,
        expires: u32,
        now: Instant,
        new_tag: &mut dyn FnMut() -> String,
    ) -> Result<Option<Published>, PublishError> {
        self.expire(now);
        let index = match if_match {
            None => None,
            Some(raw) => {
                let tag = crate::sip::grammar::trim_lws(raw);
                if tag.is_empty() || tag.contains(|c: char| c == ',' || c.is_whitespace()) {
                    return Err(PublishError::BadIfMatch);
                }
                let found = self.entries.iter().position(|e| e.etag == tag);
                Some(found.ok_or(PublishError::UnknownEtag)?)
            }
        };
        match index {
            None => {
                if expires == 0 {
                    return Err(PublishError::RemoveWithoutEtag);
                }
                let body = body.ok_or(PublishError::MissingBody)?;
                let etag = self.fresh_tag(new_tag)?;
                self.entries.push(Entry {
                    etag: etag.clone(),
                    body,
                    expires_at: deadline(now, expires),
                });
                Ok(Some(Published { etag, expires }))
            }
            Some(i) if expires == 0 => {
                self.entries.remove(i);
                Ok(None)
            }
            Some(i) => {
                let etag = self.fresh_tag(new_tag)?;
                let Some(entry) = self.entries.get_mut(i) else {
                    return Err(PublishError::UnknownEtag);
                };
                entry.etag = etag.clone();
                entry.expires_at = deadline(now, expires);
                if let Some(body) = body {
                    entry.body = body;
                }
                Ok(Some(Published { etag, expires }))
            }
        }
    }

    /// Asks `new_tag` for a tag no live publication uses (RFC 3903 §6 wants tags
    /// unique per resource).
    fn fresh_tag(&self, new_tag: &mut dyn FnMut() -> String) -> Result<String, PublishError> {
        for _ in 0..TAG_ATTEMPTS {
            let tag = new_tag();
            if !tag.is_empty() && !self.entries.iter().any(|e| e.etag == tag) {
                return Ok(tag);
            }
        }
        Err(PublishError::TagCollision)
    }

    /// The publications with their entity-tags and deadlines, to hand them to another node
    /// (a user's move, DESIGN.md §7).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &T, Instant)> {
        self.entries
            .iter()
            .map(|e| (e.etag.as_str(), &e.body, e.expires_at))
    }

    /// Takes over a publication made on another node, keeping its entity-tag so that the
    /// client's next refresh or removal (`SIP-If-Match`) finds it here; one with the same
    /// tag is replaced.
    pub fn adopt(&mut self, etag: String, body: T, expires_at: Instant) {
        self.entries.retain(|e| e.etag != etag);
        self.entries.push(Entry {
            etag,
            body,
            expires_at,
        });
    }

    /// Drops expired publications; returns true when something was removed.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.expires_at > now);
        self.entries.len() != before
    }

    /// When the earliest publication lapses, so the caller can arm one timer.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.entries.iter().map(|e| e.expires_at).min()
    }

    /// Live bodies, oldest publication first (for composition).
    ///
    /// "Live" as of the last [`expire`](Self::expire) or [`publish`](Self::publish) call.
    pub fn bodies(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|e| &e.body)
    }

    /// Number of publications held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is published, so the caller can drop the presentity's entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `now + secs`, saturating instead of panicking if the platform cannot represent it.
fn deadline(now: Instant, secs: u32) -> Instant {
    let mut d = Duration::from_secs(u64::from(secs));
    loop {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
        if d.is_zero() {
            return now;
        }
        d /= 2;
    }
}

/// A fresh entity-tag: 128 random bits, base64url without padding (22 token characters).
pub fn random_tag() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("t{n}")
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn initial_refresh_modify_remove() {
        let t0 = Instant::now();
        let mut tags = counter();
        let mut p: Publications<&str> = Publications::new();
        assert!(p.is_empty());

        // initial: body, no SIP-If-Match
        let r = p.publish(None, Some("open"), 3600, t0, &mut tags);
        assert_eq!(
            r,
            Ok(Some(Published {
                etag: "t1".into(),
                expires: 3600
            }))
        );
        assert_eq!(p.next_expiry(), Some(t0 + secs(3600)));

        // refresh: no body, SIP-If-Match; a new tag is issued and the old one retired
        let t1 = t0 + secs(1000);
        let r = p.publish(Some("t1"), None, 3600, t1, &mut tags);
        assert_eq!(
            r,
            Ok(Some(Published {
                etag: "t2".into(),
                expires: 3600
            }))
        );
        assert_eq!(p.next_expiry(), Some(t1 + secs(3600)));
        assert_eq!(p.bodies().copied().collect::<Vec<_>>(), vec!["open"]);
        assert_eq!(
            p.publish(Some("t1"), None, 3600, t1, &mut tags),
            Err(PublishError::UnknownEtag)
        );

        // modify: body and SIP-If-Match
        let r = p.publish(Some(" t2 "), Some("closed"), 60, t1, &mut tags);
        assert_eq!(
            r,
            Ok(Some(Published {
                etag: "t3".into(),
                expires: 60
            }))
        );
        assert_eq!(p.bodies().copied().collect::<Vec<_>>(), vec!["closed"]);
        assert_eq!(p.len(), 1);

        // remove: SIP-If-Match, Expires 0
        assert_eq!(p.publish(Some("t3"), None, 0, t1, &mut tags), Ok(None));
        assert!(p.is_empty());
        assert_eq!(p.next_expiry(), None);
    }

    #[test]
    fn adopted_publications_keep_their_tag() {
        let t0 = Instant::now();
        let mut old: Publications<&str> = Publications::new();
        let p = old
            .publish(None, Some("open"), 60, t0, &mut counter())
            .unwrap()
            .unwrap();
        let mut new: Publications<&str> = Publications::new();
        for (etag, body, at) in old.entries() {
            new.adopt(etag.to_string(), *body, at);
        }
        assert_eq!(new.len(), 1);
        // The client's refresh and removal reach the new home with the old tag.
        let mut tags = || "fresh".to_string();
        let r = new.publish(Some(&p.etag), None, 60, t0 + secs(10), &mut tags);
        assert_eq!(r.unwrap().unwrap().etag, "fresh");
        assert_eq!(new.bodies().copied().collect::<Vec<_>>(), ["open"]);
        assert_eq!(
            new.publish(Some("fresh"), None, 0, t0 + secs(11), &mut tags),
            Ok(None)
        );
        assert!(new.is_empty());
        // Adopting a tag that is already there replaces it.
        new.adopt("x".into(), "a", t0 + secs(5));
        new.adopt("x".into(), "b", t0 + secs(6));
        assert_eq!(new.bodies().copied().collect::<Vec<_>>(), ["b"]);
        assert_eq!(new.next_expiry(), Some(t0 + secs(6)));
    }

    #[test]
    fn errors() {
        let t0 = Instant::now();
        let mut tags = counter();
        let mut p: Publications<u8> = Publications::default();
        assert_eq!(
            p.publish(None, None, 3600, t0, &mut tags),
            Err(PublishError::MissingBody)
        );
        assert_eq!(
            p.publish(None, Some(1), 0, t0, &mut tags),
            Err(PublishError::RemoveWithoutEtag)
        );
        assert_eq!(
            p.publish(Some("nope"), Some(1), 60, t0, &mut tags),
            Err(PublishError::UnknownEtag)
        );
        assert_eq!(
            p.publish(Some("nope"), None, 0, t0, &mut tags),
            Err(PublishError::UnknownEtag)
        );
        assert_eq!(
            p.publish(Some(""), None, 60, t0, &mut tags),
            Err(PublishError::BadIfMatch)
        );
        assert_eq!(
            p.publish(Some("a, b"), None, 60, t0, &mut tags),
            Err(PublishError::BadIfMatch)
        );
        assert!(p.is_empty());
        // no tag was consumed by the failures
        assert_eq!(
            p.publish(None, Some(1), 60, t0, &mut tags),
            Ok(Some(Published {
                etag: "t1".into(),
                expires: 60
            }))
        );
    }

    #[test]
    fn expiry_and_order() {
        let t0 = Instant::now();
        let mut tags = counter();
        let mut p = Publications::new();
        p.publish(None, Some("a"), 100, t0, &mut tags).expect("a");
        p.publish(None, Some("b"), 50, t0, &mut tags).expect("b");
        p.publish(None, Some("c"), 200, t0, &mut tags).expect("c");
        // modifying "a" keeps its place (oldest first)
        p.publish(Some("t1"), Some("a2"), 300, t0, &mut tags)
            .expect("modify a");
        assert_eq!(
            p.bodies().copied().collect::<Vec<_>>(),
            vec!["a2", "b", "c"]
        );
        assert_eq!(p.next_expiry(), Some(t0 + secs(50)));

        assert!(!p.expire(t0 + secs(49)));
        assert!(p.expire(t0 + secs(50)));
        assert_eq!(p.bodies().copied().collect::<Vec<_>>(), vec!["a2", "c"]);
        assert_eq!(p.next_expiry(), Some(t0 + secs(200)));

        // an expired publication cannot be refreshed even before expire() ran
        assert_eq!(
            p.publish(Some("t3"), None, 60, t0 + secs(200), &mut tags),
            Err(PublishError::UnknownEtag)
        );
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn colliding_generator_is_refused() {
        let t0 = Instant::now();
        let mut p = Publications::new();
        let mut same = || "x".to_owned();
        p.publish(None, Some(1), 60, t0, &mut same).expect("first");
        assert_eq!(
            p.publish(None, Some(2), 60, t0, &mut same),
            Err(PublishError::TagCollision)
        );
        // refreshing must also change the tag, so "x" again is a collision
        assert_eq!(
            p.publish(Some("x"), None, 60, t0, &mut same),
            Err(PublishError::TagCollision)
        );
        assert_eq!(p.len(), 1);
        let mut empty = String::new;
        assert_eq!(
            p.publish(None, Some(3), 60, t0, &mut empty),
            Err(PublishError::TagCollision)
        );
    }

    #[test]
    fn random_tags_are_tokens_and_distinct() {
        let a = random_tag();
        let b = random_tag();
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
