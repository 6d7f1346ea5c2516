//! The table of open office-environment exchanges (`docs/moe-mp.md` §2), with time passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::error::{invalid, MoeError};
use super::*;

/// One open (or recently expired) exchange, as [`Exchanges::answer`] returns it when closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The addressee's bare JID: the only one who may answer.
    pub addressee: String,
    /// What the exchange is about.
    pub kind: Kind,
    /// Names of the requested (file request) or offered (offer) files an accept may name.
    pub offered: Vec<String>,
    /// When the exchange stops accepting answers.
    pub expires_at: Instant,
}

#[derive(Debug)]
struct Entry {
    exchange: Exchange,
    ttl: Duration,
    expired: bool,
}

impl Entry {
    fn is_expired(&self, now: Instant) -> bool {
        self.expired || now >= self.exchange.expires_at
    }

    /// When the entry is dropped: one ttl after its expiry.
    fn forget_at(&self) -> Instant {
        let at = self.exchange.expires_at;
        at.checked_add(self.ttl).unwrap_or(at)
    }
}

/// Open exchanges of the requesters of one shard (pure; time passed in).
///
/// Keyed by (requester bare JID, id); an expired entry is kept one more ttl so a late answer
/// gets `exchange-expired` rather than `unknown-exchange`.
#[derive(Debug, Default)]
pub struct Exchanges {
    entries: HashMap<(String, String), Entry>,
}

impl Exchanges {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a request (requester and addressee are bare JIDs as strings); Conflict if
    /// (requester, id) is open. An expired id may be reused; `ttl` is capped at [`MAX_TTL`].
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        requester: &str,
        id: &str,
        addressee: &str,
        kind: Kind,
        offered: Vec<String>,
        now: Instant,
        ttl: Duration,
    ) -> Result<(), MoeError> {
        let ttl = ttl.min(MAX_TTL);
        let key = (requester.to_string(), id.to_string());
        if let Some(e) = self.entries.get(&key) {
            if !e.is_expired(now) {
                return Err(MoeError::Conflict(id.to_string()));
            }
        }
        self.entries.insert(
            key,
            Entry {
                exchange: Exchange {
                    addressee: addressee.to_string(),
                    kind,
                    offered,
                    expires_at: now.checked_add(ttl).unwrap_or(now),
                },
                ttl,
                expired: false,
            },
        );
        Ok(())
    }

    /// Checks and closes an answer from `responder` (bare JID): UnknownExchange, ExchangeExpired
    /// (expired entries are remembered for one more ttl so the error is precise), NotAddressee,
    /// InvalidPayload when the answer does not fit the kind (worklist answer for a worklist
    /// request; accept of an offer needs an endpoint and only offered names; accept of a file
    /// request must not carry an endpoint and names only requested files; decline fits all).
    /// Returns the closed exchange; a refused answer leaves the exchange as it was.
    pub fn answer(
        &mut self,
        responder: &str,
        answer: &Answer,
        now: Instant,
    ) -> Result<Exchange, MoeError> {
        let key = (answer.requester().to_string(), answer.id().to_string());
        let Some(entry) = self.entries.get_mut(&key) else {
            return Err(MoeError::UnknownExchange);
        };
        if entry.is_expired(now) {
            entry.expired = true;
            return Err(MoeError::ExchangeExpired);
        }
        let ex = &entry.exchange;
        if ex.addressee != responder {
            return Err(MoeError::NotAddressee);
        }
        fits(ex, answer)?;
        match self.entries.remove(&key) {
            Some(e) => Ok(e.exchange),
            None => Err(MoeError::UnknownExchange),
        }
    }

    /// Drops expired entries older than 2*ttl; returns how many open exchanges expired now.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired_now = 0;
        self.entries.retain(|_, e| {
            if now >= e.forget_at() {
                if !e.expired {
                    expired_now += 1;
                }
                return false;
            }
            if !e.expired && now >= e.exchange.expires_at {
                e.expired = true;
                expired_now += 1;
            }
            true
        });
        expired_now
    }

    /// How many exchanges are open (not yet seen expired by `expire` or `answer`).
    pub fn open_count(&self) -> usize {
        self.entries.values().filter(|e| !e.expired).count()
    }

    /// The next instant at which [`Exchanges::expire`] has something to do: an open exchange
    /// expiring, or a remembered one to drop.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.entries
            .values()
            .map(|e| {
                if e.expired {
                    e.forget_at()
                } else {
                    e.exchange.expires_at
                }
            })
            .min()
    }
}

/// Whether `answer` fits the exchange it closes (§2.1–§2.3).
fn fits(ex: &Exchange, answer: &Answer) -> Result<(), MoeError> {
    match (answer, ex.kind) {
        (Answer::Decline { .. }, _) | (Answer::Worklist { .. }, Kind::Worklist) => Ok(()),
        (Answer::Worklist { .. }, _) => Err(invalid("worklist answers only a worklist-request")),
        (Answer::Accept { .. }, Kind::Worklist) => {
            Err(invalid("accept does not answer a worklist-request"))
        }
        (
            Answer::Accept {
                files, endpoint, ..
            },
            kind,
        ) => {
            match (kind, endpoint) {
                (Kind::Offer, None) => return Err(invalid("accept of an offer needs an endpoint")),
                (Kind::FileRequest, Some(_)) => {
                    return Err(invalid(
                        "accept of a file-request must not carry an endpoint",
                    ))
                }
                _ => {}
            }
            match files.iter().find(|f| !ex.offered.contains(&f.name)) {
                Some(f) => Err(invalid(format!(
                    "accept names file {:?} that was not {}",
                    f.name,
                    if kind == Kind::Offer {
                        "offered"
                    } else {
                        "requested"
                    }
                ))),
                None => Ok(()),
            }
        }
    }
}
