//! Running code inside another network namespace.
//!
//! Entering a namespace (`setns`) changes the calling thread only, and every
//! socket a thread opens belongs to the namespace the thread is in when it
//! opens it. So work for another namespace runs on a fresh thread of its own
//! that enters the namespace first and then drives the work on a
//! current-thread tokio runtime built there (threads that runtime spawns,
//! such as its blocking pool, inherit the namespace).

use std::fs::File;
use std::future::Future;
use std::path::Path;

use super::veth::PlumbError;

/// Enters `ns` on the calling thread and runs `f` to completion on a
/// current-thread runtime. Only for a thread of its own: the thread stays
/// in the namespace afterwards.
fn enter_and_run<F, Fut, T>(ns: &File, f: F) -> Result<T, PlumbError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, PlumbError>>,
{
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| PlumbError::Other { op: "enter the namespace".into(), msg: e.to_string() })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PlumbError::Other { op: "runtime".into(), msg: e.to_string() })?;
    rt.block_on(f())
}

fn open(path: &Path) -> Result<File, PlumbError> {
    File::open(path).map_err(|source| PlumbError::Netns { path: path.display().to_string(), source })
}

/// Runs `f` inside the namespace `ns` on a thread of its own and awaits its result.
pub(crate) async fn run_in<F, Fut, T>(ns: File, f: F) -> Result<T, PlumbError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, PlumbError>>,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(enter_and_run(&ns, f));
    });
    rx.await.map_err(|_| PlumbError::Other { op: "namespace thread".into(), msg: "died".into() })?
}

/// Blocking form of [`run_in`] for callers outside any runtime (tools and
/// tests): runs `f` inside the namespace at `path` (e.g. `/run/netns/NAME`)
/// on a thread of its own and waits for it.
pub fn block_on_in<F, Fut, T>(path: &Path, f: F) -> Result<T, PlumbError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, PlumbError>>,
    T: Send + 'static,
{
    let ns = open(path)?;
    std::thread::spawn(move || enter_and_run(&ns, f))
        .join()
        .map_err(|_| PlumbError::Other { op: "namespace thread".into(), msg: "panicked".into() })?
}
