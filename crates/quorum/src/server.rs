//! The listener side of the quorum transport: accepts peers' Raft RPCs and followers'
//! forwarded proposals and hands them to the local Raft node.
//!
//! Each connection is served by its own task, one request at a time. A frame longer than the
//! maximum, a body that does not arrive in time, or bytes that are not a request close that
//! connection with one warning; nothing a peer sends can stop the listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::task::JoinSet;

use crate::quorum::propose_local;
use crate::quorum::CallSlot;
use crate::quorum::LocalWriteError;
use crate::types::Raft;
use crate::wire;
use crate::wire::ForwardError;
use crate::wire::Request;
use crate::wire::Response;

/// Connections served at once; more are closed on accept.
const CONNECTIONS_MAX: usize = 256;
/// Once a frame's length has arrived, its body must follow within this.
const FRAME_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `listener` until `shutdown` turns true, then stops every connection task.
pub(crate) fn spawn(
    listener: TcpListener,
    raft: Raft,
    propose_timeout: Duration,
    calls: CallSlot,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = stopped(&mut shutdown) => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Ok(permit) = permits.clone().try_acquire_owned() else {
                            tracing::warn!(%peer, "quorum listener: {CONNECTIONS_MAX} connections open, closing a new one");
                            continue;
                        };
                        let raft = raft.clone();
                        let calls = calls.clone();
                        connections.spawn(async move {
                            serve(stream, peer, raft, propose_timeout, calls).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("quorum listener: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        connections.shutdown().await;
    })
}

/// Resolves once `shutdown` is true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it before the task can move.
    let _ = shutdown.wait_for(|stop| *stop).await.is_ok();
}

async fn serve(mut stream: TcpStream, peer: SocketAddr, raft: Raft, propose_timeout: Duration, calls: CallSlot) {
    let _ = stream.set_nodelay(true);
    loop {
        let len = match wire::read_frame_len(&mut stream).await {
            Ok(Some(len)) => len,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%peer, "quorum listener: closing connection: {e}");
                return;
            }
        };
        let body = match tokio::time::timeout(FRAME_BODY_TIMEOUT, wire::read_frame_body(&mut stream, len)).await {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => {
                tracing::warn!(%peer, "quorum listener: closing connection inside a {len}-byte frame: {e}");
                return;
            }
            Err(_) => {
                tracing::warn!(%peer, "quorum listener: closing connection: {len}-byte frame body not received within {FRAME_BODY_TIMEOUT:?}");
                return;
            }
        };
        let request: Request = match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                tracing::warn!(%peer, "quorum listener: closing connection: frame is not a quorum request: {e}");
                return;
            }
        };
        let response = handle(&raft, request, propose_timeout, &calls).await;
        let payload = serde_json::to_vec(&response).expect("responses encode");
        if let Err(e) = wire::write_frame(&mut stream, &payload).await {
            tracing::debug!(%peer, "quorum listener: could not answer: {e}");
            return;
        }
    }
}

async fn handle(raft: &Raft, request: Request, propose_timeout: Duration, calls: &CallSlot) -> Response {
    match request {
        Request::AppendEntries(rpc) => Response::AppendEntries(raft.append_entries(rpc).await),
        Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await),
        Request::InstallSnapshot(rpc) => Response::InstallSnapshot(raft.install_snapshot(rpc).await),
        Request::Forward(command) => Response::Forward(match propose_local(raft, command, propose_timeout).await {
            Ok(index) => Ok(index),
            Err(LocalWriteError::NotLeader { leader, leader_addr }) => {
                Err(ForwardError::NotLeader { leader, leader_addr })
            }
            Err(LocalWriteError::Other(e)) => Err(ForwardError::Failed(e.to_string())),
        }),
        Request::Call(request) => {
            let handler = calls.read().expect("call handler lock").clone();
            Response::Call(match handler {
                Some(handler) => Ok(handler.call(request).await),
                None => Err("this node serves no application calls yet".to_string()),
            })
        }
    }
}
