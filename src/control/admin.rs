//! The node's HTTP admin API (DESIGN.md §2 `Admin`, §6): a handful of JSON endpoints over
//! [`crate::http`], and the client side `rendezvous ctl` uses.
//!
//! - `GET /api/cluster`: the cluster state document (§6) as JSON — the primary's directory
//!   and loads, or a member's replica of them.
//! - `GET /api/node`: this node's own figures and the users it serves now.
//! - `POST /api/nodes` with `{"id": "..."}`: the primary takes that `[[node]]`/`[[pool]]`
//!   entry into the cluster (OPTIONS, spawn if configured, INVITE).
//! - `DELETE /api/nodes/<id>`: the primary ends that node's membership (BYE).
//! - `POST /api/nodes/<id>/drain`: the primary moves that node's users to the others, then
//!   ends its membership (§7); answers how many users move, `404` for an unknown node, `409`
//!   for the primary or the last server.

use std::net::SocketAddr;
use std::time::Duration;

use actix::Addr;
use serde::Deserialize;

use super::actor::{AddNode, Control, Drain, NodeJson, RemoveNode, StateJson};
use crate::http::{self, Limits, Request, Response};

/// How long `rendezvous ctl` waits for the admin API's answer (a drain answers at once;
/// adding a pool server may wait for its spawn).
const CTL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct AddBody {
    id: String,
}

async fn handle(control: Addr<Control>, req: Request) -> Response {
    let gone = || Response::error(503, "the node is shutting down");
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/api/cluster") => match control.send(StateJson).await {
            Ok(json) => Response::json(200, json),
            Err(_) => gone(),
        },
        ("GET", "/api/node") => match control.send(NodeJson).await {
            Ok(json) => Response::json(200, json),
            Err(_) => gone(),
        },
        ("POST", "/api/nodes") => {
            let Ok(body) = serde_json::from_slice::<AddBody>(&req.body) else {
                return Response::error(400, "expected {\"id\": \"<node id>\"}");
            };
            match control.send(AddNode(body.id)).await {
                Ok(Ok(msg)) => Response::json(200, serde_json::json!({ "ok": msg }).to_string()),
                Ok(Err(e)) => Response::error(409, &e),
                Err(_) => gone(),
            }
        }
        ("POST", path) if path.starts_with("/api/nodes/") && path.ends_with("/drain") => {
            let id = path["/api/nodes/".len()..path.len() - "/drain".len()].to_string();
            if id.is_empty() || id.contains('/') {
                return Response::not_found();
            }
            match control.send(Drain(id.clone())).await {
                Ok(Ok(moving)) => Response::json(
                    200,
                    serde_json::json!({ "ok": format!("draining {id}"), "moving": moving })
                        .to_string(),
                ),
                Ok(Err(e)) => Response::error(e.status(), &e.to_string()),
                Err(_) => gone(),
            }
        }
        ("DELETE", path) if path.starts_with("/api/nodes/") => {
            let id = path["/api/nodes/".len()..].to_string();
            match control.send(RemoveNode(id)).await {
                Ok(Ok(msg)) => Response::json(200, serde_json::json!({ "ok": msg }).to_string()),
                Ok(Err(e)) => Response::error(409, &e),
                Err(_) => gone(),
            }
        }
        (_, "/api/cluster" | "/api/node") => Response::method_not_allowed("GET"),
        (_, "/api/nodes") => Response::method_not_allowed("POST"),
        _ => Response::not_found(),
    }
}

/// Serves the admin API on a bound listener until `shutdown` turns true.
pub fn serve(
    std_listener: std::net::TcpListener,
    control: Addr<Control>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    actix_rt::spawn(http::serve(
        listener,
        Limits::default(),
        move |req| handle(control.clone(), req),
        shutdown,
    ));
    Ok(local)
}

/// `rendezvous ctl`: one request to a node's admin API; the body of a 2xx, or the error.
pub fn call(admin: &str, method: &str, path: &str, body: Option<&[u8]>) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (status, body) = rt
        .block_on(http::request(admin, method, path, body, CTL_TIMEOUT))
        .map_err(|e| format!("{admin}: {e}"))?;
    let text = String::from_utf8_lossy(&body).into_owned();
    if (200..300).contains(&status) {
        Ok(text)
    } else {
        Err(format!("{status}: {text}"))
    }
}
