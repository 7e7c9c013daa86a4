//! A small client for the daemon's API on its Unix socket.

use std::path::Path;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;
use tokio::net::UnixStream;

use super::ApiError;

#[derive(Debug, Error)]
pub enum ClientError {
    /// No daemon listens on the socket.
    #[error("no daemon at {path}: {source}")]
    NoDaemon { path: String, source: std::io::Error },
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("bad request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("daemon answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("cannot decode the daemon's answer: {0}")]
    Decode(#[from] serde_json::Error),
}

/// `GET path` on the API socket, decoding JSON.
pub async fn get<T: DeserializeOwned>(socket: &Path, path: &str) -> Result<T, ClientError> {
    let req = Request::get(path).header("host", "weaver").body(Full::new(Bytes::new()))?;
    send(socket, req).await
}

/// `POST path` with a JSON body, decoding the JSON answer.
pub async fn post<B: Serialize, T: DeserializeOwned>(socket: &Path, path: &str, body: &B) -> Result<T, ClientError> {
    let body = serde_json::to_vec(body)?;
    let req = Request::post(path)
        .header("host", "weaver")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    send(socket, req).await
}

async fn send<T: DeserializeOwned>(socket: &Path, req: Request<Full<Bytes>>) -> Result<T, ClientError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::NoDaemon { path: socket.display().to_string(), source })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    driver.abort();
    if !status.is_success() {
        let message = serde_json::from_slice::<ApiError>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        return Err(ClientError::Api { status: status.as_u16(), message });
    }
    Ok(serde_json::from_slice(&body)?)
}
