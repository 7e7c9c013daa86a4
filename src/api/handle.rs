//! The API's view of the running mesh: requests to the task that owns it.
//!
//! The mesh core is owned by one task; the API never touches it directly but
//! sends a [`MeshRequest`] and awaits the answer.

use tokio::sync::{mpsc, oneshot};

use super::{ConnectRequest, ConnectionView, ForgetRequest, MeshStatus, PeerView};

/// A request to the mesh task, with the channel its answer goes back on.
#[derive(Debug)]
pub enum MeshRequest {
    Status(oneshot::Sender<MeshStatus>),
    Peers(oneshot::Sender<Vec<PeerView>>),
    Connections(oneshot::Sender<Vec<ConnectionView>>),
    Connect(ConnectRequest, oneshot::Sender<Result<(), String>>),
    Forget(ForgetRequest, oneshot::Sender<Result<(), String>>),
    Ipam(crate::daemon::ipam::IpamRequest),
    Dns(crate::daemon::dns::DnsRequest),
}

/// Cloneable handle the API server keeps.
#[derive(Debug, Clone)]
pub struct MeshHandle {
    tx: mpsc::Sender<MeshRequest>,
}

/// The mesh task is gone (shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the mesh is not running")]
pub struct MeshGone;

impl MeshHandle {
    pub fn new(tx: mpsc::Sender<MeshRequest>) -> Self {
        MeshHandle { tx }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> MeshRequest) -> Result<T, MeshGone> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| MeshGone)?;
        rx.await.map_err(|_| MeshGone)
    }

    pub async fn status(&self) -> Result<MeshStatus, MeshGone> {
        self.ask(MeshRequest::Status).await
    }
    pub async fn peers(&self) -> Result<Vec<PeerView>, MeshGone> {
        self.ask(MeshRequest::Peers).await
    }
    pub async fn connections(&self) -> Result<Vec<ConnectionView>, MeshGone> {
        self.ask(MeshRequest::Connections).await
    }
    pub async fn connect(&self, r: ConnectRequest) -> Result<Result<(), String>, MeshGone> {
        self.ask(|tx| MeshRequest::Connect(r, tx)).await
    }
    pub async fn forget(&self, r: ForgetRequest) -> Result<Result<(), String>, MeshGone> {
        self.ask(|tx| MeshRequest::Forget(r, tx)).await
    }
    /// Sends a DNS request; `make` builds it around the reply channel.
    pub async fn dns<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> crate::daemon::dns::DnsRequest,
    ) -> Result<T, MeshGone> {
        self.ask(|tx| MeshRequest::Dns(make(tx))).await
    }
    /// Sends an IPAM request; `make` builds it around the reply channel.
    pub async fn ipam<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> crate::daemon::ipam::IpamRequest,
    ) -> Result<T, MeshGone> {
        self.ask(|tx| MeshRequest::Ipam(make(tx))).await
    }
}
