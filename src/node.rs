//! One node process (DESIGN.md §1–2): opens the store, makes the TLS identity, starts the
//! presence hub, the worker arbiters and the XMPP listener, and shuts them down in order —
//! every stream gets `<system-shutdown/>` and `</stream:stream>` (RFC 6120 §4.4, §4.9.3.20),
//! then the store is flushed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio_rustls::TlsAcceptor;
use tracing::info;

use crate::c2s::listener::XmppListener;
use crate::c2s::session::ClusterHandle;
use crate::c2s::session::XmppContext;
use crate::c2s::tls::{ensure_certificate, server_config, TlsError};
use crate::cluster::control::Settings as ControlSettings;
use crate::cluster::view::{ClusterView, NodeAddrs};
use crate::config::{Config, ConfigError, NodeConfig, Role, TlsPolicy};
use crate::control::dispatch::NodeDispatch;
use crate::control::Control;
use crate::presence::sip::{HubDispatch, SipRuntime};
use crate::presence::{ClusterLink, Hub, HubSettings};
use crate::store::{SledStore, Store, StoreError};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// TLS identity.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The config key that named it.
        key: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The operator socket could not be made.
    #[error("cannot listen on the operator socket {path}: {source}")]
    Admin {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data dir could not be created.
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A running node.
pub struct NodeHandle {
    /// The node id.
    pub id: String,
    /// Where the XMPP listener is bound (the real port when the config said 0).
    pub xmpp_addr: SocketAddr,
    /// Where SIP is served, UDP and TCP (the real port when the config said 0).
    pub sip_addr: SocketAddr,
    /// Where the HTTP admin API is served.
    pub admin_addr: Option<SocketAddr>,
    /// The presence hub.
    pub hub: Hub,
    /// What the edges know of the cluster.
    pub view: Arc<ClusterView>,
    /// The control plane.
    pub control: Addr<Control>,
    store: Arc<dyn Store>,
    shutdown: tokio::sync::watch::Sender<bool>,
    connections: Arc<AtomicUsize>,
    workers: Vec<Arbiter>,
    shard_arbiters: Vec<Arbiter>,
    sip_arbiter: Arbiter,
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Opens the node's sled store in its data dir.
pub fn open_store(node: &NodeConfig) -> Result<Arc<dyn Store>, NodeError> {
    let dir = node.data_dir();
    std::fs::create_dir_all(&dir).map_err(|source| NodeError::DataDir {
        path: dir.clone(),
        source,
    })?;
    Ok(Arc::new(SledStore::open(&dir.join("store"))?))
}

/// Starts a node inside the current actix `System`.
pub fn start(
    config: &Config,
    node: &NodeConfig,
    store: Arc<dyn Store>,
) -> Result<NodeHandle, NodeError> {
    start_with(config, node, store, None)
}

/// Starts a node; `join` makes it INVITE that primary SIP address at start (`--join`).
pub fn start_with(
    config: &Config,
    node: &NodeConfig,
    store: Arc<dyn Store>,
    join: Option<SocketAddr>,
) -> Result<NodeHandle, NodeError> {
    let domain = config.cluster.domain.clone();
    let data_dir = node.data_dir();
    std::fs::create_dir_all(&data_dir).map_err(|source| NodeError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let tls = match ensure_certificate(&config.xmpp.cert, &config.xmpp.key, &data_dir, &domain)
        .and_then(|(c, k)| server_config(&c, &k))
    {
        Ok(cfg) => Some(TlsAcceptor::from(cfg)),
        Err(e) if config.xmpp.tls == TlsPolicy::Optional => {
            tracing::warn!(error = %e, "no TLS identity; STARTTLS will not be offered");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let shards = match config.runtime.presence_shards {
        0 => cores(),
        n => n,
    };
    let (hub, shard_arbiters) = Hub::start(
        HubSettings {
            domain: domain.clone(),
            max_roster_items: config.limits.max_roster_items,
            max_offline_messages: config.limits.max_offline_messages,
            shards,
            mailbox: config.runtime.shard_mailbox,
            sip: config.sip.clone(),
            limits: config.limits.clone(),
        },
        store.clone(),
    );
    let std_listener =
        std::net::TcpListener::bind(node.xmpp).map_err(|source| NodeError::Bind {
            addr: node.xmpp,
            key: format!("node \"{}\" xmpp", node.id),
            source,
        })?;
    let bind_err = |source| NodeError::Bind {
        addr: node.xmpp,
        key: format!("node \"{}\" xmpp", node.id),
        source,
    };
    std_listener.set_nonblocking(true).map_err(bind_err)?;
    let xmpp_addr = std_listener.local_addr().map_err(bind_err)?;
    let listener = tokio::net::TcpListener::from_std(std_listener).map_err(bind_err)?;
    let workers: Vec<Arbiter> = (0..match config.runtime.workers {
        0 => cores(),
        n => n,
    })
        .map(|_| Arbiter::new())
        .collect();
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let connections = Arc::new(AtomicUsize::new(0));
    let clustered = config.is_cluster() || join.is_some() || node.role != Role::Primary;
    let view = Arc::new(ClusterView::new(
        &node.id,
        node.role == Role::Primary,
        clustered,
    ));
    let dispatch = Arc::new(NodeDispatch::new(
        Arc::new(HubDispatch::new(hub.clone())),
        view.clone(),
        &domain,
    ));
    let sip_arbiter = Arbiter::new();
    let sender = crate::sip::transport::start(
        node.sip,
        crate::sip::transport::TransportSettings {
            max_message_bytes: config.limits.max_sip_message_bytes,
            udp_receive_buffer_bytes: config.limits.sip_udp_receive_buffer_bytes,
            max_connections: config.limits.max_sip_connections,
            idle_timeout: Duration::from_millis(config.limits.idle_timeout_ms),
        },
        sip_arbiter.handle(),
        dispatch.clone(),
    )
    .map_err(|source| NodeError::Bind {
        addr: node.sip,
        key: format!("node \"{}\" sip", node.id),
        source,
    })?;
    let sip_addr = sender.local_addr();
    let me = NodeAddrs {
        id: node.id.clone(),
        xmpp: xmpp_addr,
        sip: sip_addr,
    };
    let admin_listener =
        std::net::TcpListener::bind(node.admin).map_err(|source| NodeError::Bind {
            addr: node.admin,
            key: format!("node \"{}\" admin", node.id),
            source,
        })?;
    let admin_addr = admin_listener.local_addr().ok();
    let control_settings = ControlSettings {
        config: Arc::new(config.clone()),
        me,
        admin: admin_addr,
        join,
    };
    let control = {
        let (view, hub, store, sender) = (view.clone(), hub.clone(), store.clone(), sender.clone());
        Control::start_in_arbiter(&sip_arbiter.handle(), move |_| {
            Control::new(control_settings, view, hub, store, sender)
        })
    };
    dispatch.connect(
        control.clone().recipient(),
        control.clone().recipient(),
        sender.clone(),
    );
    if clustered {
        // Users homed elsewhere are reached over SIP and records are written through to the
        // primary (DESIGN.md §3, §8).
        hub.link_cluster(ClusterLink {
            view: view.clone(),
            secret: config.cluster.secret.clone(),
            write_through: control.clone().recipient(),
        });
    }
    let admin_addr = Some(
        crate::control::admin::serve(admin_listener, control.clone(), shutdown_rx.clone())
            .map_err(|source| NodeError::Bind {
                addr: node.admin,
                key: format!("node \"{}\" admin", node.id),
                source,
            })?,
    );
    let cluster = clustered.then(|| ClusterHandle {
        view: view.clone(),
        control: control.clone().recipient(),
        redirect: config.cluster.redirect,
        timeout: Duration::from_millis(config.cluster.ccmp_timeout_ms),
    });
    let ctx = Arc::new(XmppContext {
        node: node.id.clone(),
        domain,
        xmpp: config.xmpp.clone(),
        credentials: crate::accounts::CredentialPolicy::from_config(config),
        limits: config.limits.clone(),
        store: store.clone(),
        hub: hub.clone(),
        tls,
        loopback: xmpp_addr.ip().is_loopback(),
        next_id: AtomicU64::new(1),
        shutdown: shutdown_rx,
        cluster,
    });
    #[cfg(unix)]
    crate::control::operator::serve(
        &data_dir,
        store.clone(),
        hub.clone(),
        crate::accounts::CredentialPolicy::from_config(config),
    )
    .map_err(|source| NodeError::Admin {
        path: crate::control::operator::socket_path(&data_dir),
        source,
    })?;
    let _ = hub.inner.sip.set(SipRuntime::new(sender, &config.sip));
    crate::presence::sip::announce_started(&hub);
    let handles = workers.iter().map(|a| a.handle()).collect();
    XmppListener::new(listener, ctx, handles, connections.clone()).start();
    info!(node = %node.id, xmpp = %xmpp_addr, sip = %sip_addr, admin = ?admin_addr, domain = %config.cluster.domain, "node started");
    Ok(NodeHandle {
        id: node.id.clone(),
        xmpp_addr,
        sip_addr,
        admin_addr,
        hub,
        view,
        control,
        store,
        shutdown,
        connections,
        workers,
        shard_arbiters,
        sip_arbiter,
    })
}

impl NodeHandle {
    /// The node's store (tests and tools look at what the cluster wrote into it).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Open client connections.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Closes every stream with `system-shutdown`, waits up to 3 s for them to go, flushes
    /// the store and stops the worker threads.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while self.connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let the unbinds reach the shards before the store is flushed, and have the shards
        // write what they hold back (SIP subscriptions changed in the last moments).
        tokio::time::sleep(Duration::from_millis(50)).await;
        for shard in self.hub.inner.shards() {
            let _ = shard.send(crate::presence::shard::FlushStore).await;
        }
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "store flush failed");
        }
        // SIP transport and sessions first (their unbinds reach the shards), then the
        // shards; joining them drops every handle on the store, so the next process can
        // open it.
        self.sip_arbiter.stop();
        let _ = self.sip_arbiter.join();
        for arbiters in [self.workers, self.shard_arbiters] {
            for a in &arbiters {
                a.stop();
            }
            for a in arbiters {
                let _ = a.join();
            }
        }
        info!(node = %self.id, "node stopped");
    }
}

/// Runs a node until SIGINT/SIGTERM; `join` is `--join`'s primary SIP address.
pub fn run(config: Config, id: Option<&str>, join: Option<SocketAddr>) -> Result<(), NodeError> {
    let node = config.node(id)?;
    let store = open_store(&node)?;
    let system = actix_rt::System::new();
    system.block_on(async move {
        let handle = start_with(&config, &node, store, join)?;
        println!(
            "rendezvous node {} ({:?}) listening: xmpp {}, sip {} (udp+tcp), admin {}",
            handle.id,
            node.role,
            handle.xmpp_addr,
            handle.sip_addr,
            handle
                .admin_addr
                .map_or_else(|| "-".to_string(), |a| a.to_string())
        );
        wait_for_signal().await;
        info!("shutting down");
        handle.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
