//! The local operator channel of a running node: a Unix socket `<data_dir>/admin.sock`
//! (mode 0600, so only the node's owner can use it) taking one JSON request per line. It lets
//! `rendezvous user …` manage accounts while the node holds the store open. The cluster-wide
//! HTTP admin API (DESIGN.md §2 `Admin`) comes with the cluster control plane.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::accounts::{self, CredentialPolicy};
use crate::presence::{AccountRemoved, Hub};
use crate::store::{Records, Store};

/// One operator request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Create an account.
    Add {
        /// Account name.
        name: String,
        /// Password.
        password: String,
    },
    /// Delete an account (its sessions are closed).
    Del {
        /// Account name.
        name: String,
    },
    /// Change a password.
    Passwd {
        /// Account name.
        name: String,
        /// New password.
        password: String,
    },
    /// List accounts.
    List,
}

impl Request {
    /// The operation's name, for logs (never the password).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Add { .. } => "add",
            Request::Del { .. } => "del",
            Request::Passwd { .. } => "passwd",
            Request::List => "list",
        }
    }
}

/// The answer: `ok` and a message, or the error text.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Human-readable result or error.
    pub message: String,
}

/// Path of the socket in a data dir.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// Carries out a request against the store (and the hub, to close a deleted user's sessions).
pub fn execute(
    req: Request,
    store: &dyn Store,
    hub: Option<&Hub>,
    policy: &CredentialPolicy,
) -> Response {
    let domain = &policy.realm;
    let result = match req {
        Request::Add { name, password } => {
            accounts::add(store, &name, &password, policy).map(|u| format!("added {u}@{domain}"))
        }
        Request::Del { name } => accounts::delete(store, &name).map(|()| {
            let user = crate::xmpp::jid::normalize_local(&name).unwrap_or(name);
            if let Some(hub) = hub {
                hub.shard(&user)
                    .do_send(AccountRemoved { user: user.clone() });
            }
            format!("deleted {user}@{domain}")
        }),
        Request::Passwd { name, password } => {
            accounts::set_password(store, &name, &password, policy)
                .map(|()| format!("password changed for {name}@{domain}"))
        }
        Request::List => store
            .list_accounts()
            .map(|users| {
                users
                    .iter()
                    .map(|u| format!("{u}@{domain}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .map_err(Into::into),
    };
    match result {
        Ok(message) => Response { ok: true, message },
        Err(e) => Response {
            ok: false,
            message: e.to_string(),
        },
    }
}

/// Serves the socket until the node stops.
#[cfg(unix)]
pub fn serve(
    data_dir: &Path,
    store: Arc<dyn Store>,
    hub: Hub,
    policy: CredentialPolicy,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path); // a stale socket of a previous run
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    actix_rt::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (store, hub, policy) = (store.clone(), hub.clone(), policy.clone());
            actix_rt::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                // One bounded request per connection.
                let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, 64 * 1024));
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                let resp = match serde_json::from_str::<Request>(&line) {
                    Ok(req) => {
                        tracing::info!(op = req.name(), "operator request");
                        execute(req, &*store, Some(&hub), &policy)
                    }
                    Err(e) => Response {
                        ok: false,
                        message: format!("bad request: {e}"),
                    },
                };
                let mut out = serde_json::to_vec(&resp).unwrap_or_default();
                out.push(b'\n');
                let _ = write.write_all(&out).await;
            });
        }
    });
    Ok(())
}

/// Sends a request to the node running on `data_dir`.
#[cfg(unix)]
pub fn request(data_dir: &Path, req: &Request) -> Result<Response, String> {
    use std::io::{BufRead, BufReader, Write};
    let path = socket_path(data_dir);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
        format!(
            "the store is in use and the node's socket {} does not answer: {e}",
            path.display()
        )
    })?;
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    stream.write_all(&line).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&answer).map_err(|e| format!("bad answer from the node: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn requests_round_trip_as_json() {
        let r: Request =
            serde_json::from_str(r#"{"op":"add","name":"a","password":"p w"}"#).unwrap();
        assert!(matches!(r, Request::Add { ref password, .. } if password == "p w"));
        assert!(serde_json::from_str::<Request>(r#"{"op":"nuke"}"#).is_err());
    }

    #[test]
    fn execute_reports_errors() {
        let s = MemoryStore::new();
        let policy = CredentialPolicy {
            scram_iterations: 4096,
            realm: "x".into(),
        };
        let ok = execute(
            Request::Add {
                name: "a".into(),
                password: "p".into(),
            },
            &s,
            None,
            &policy,
        );
        assert!(ok.ok, "{}", ok.message);
        let dup = execute(
            Request::Add {
                name: "a".into(),
                password: "p".into(),
            },
            &s,
            None,
            &policy,
        );
        assert!(
            !dup.ok && dup.message.contains("already exists"),
            "{}",
            dup.message
        );
        let list = execute(Request::List, &s, None, &policy);
        assert_eq!(list.message, "a@x");
    }
}
