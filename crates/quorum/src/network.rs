//! The client side of the quorum transport: openraft's [`RaftNetworkFactory`] and
//! [`RaftNetwork`] over TCP, plus forwarding a proposal to the leader.
//!
//! Connections are pooled per peer address: an RPC takes an idle connection (or dials one),
//! sends one request frame, reads one response frame, and gives the connection back. Any error
//! drops the connection, so the next RPC dials again. Every RPC runs under a timeout (openraft's
//! `hard_ttl` for its RPCs, the configured `rpc_timeout` for dialing and forwards).
//!
//! The pool also remembers when each peer last answered, which `Quorum::status` reports as
//! `last_contact_ms_ago` (openraft 0.9 has no per-follower contact metric).

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use openraft::error::InstallSnapshotError;
use openraft::error::NetworkError;
use openraft::error::RPCError;
use openraft::error::RaftError;
use openraft::error::RemoteError;
use openraft::error::Unreachable;
use openraft::network::RPCOption;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::InstallSnapshotRequest;
use openraft::raft::InstallSnapshotResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use openraft::RaftNetwork;
use openraft::RaftNetworkFactory;
use tokio::net::TcpStream;

use crate::types::Command;
use crate::types::Node;
use crate::types::NodeId;
use crate::types::TypeConfig;
use crate::wire;
use crate::wire::ForwardError;
use crate::wire::Request;
use crate::wire::Response;

/// Idle connections kept per peer; more are closed when returned.
const IDLE_CONNECTIONS_PER_PEER_MAX: usize = 4;

/// Connections and last-contact times shared by every client of one node.
pub(crate) struct PeerPool {
    idle: Mutex<HashMap<String, Vec<TcpStream>>>,
    last_contact: Mutex<HashMap<NodeId, Instant>>,
    dial_timeout: Duration,
}

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// Could not connect: the request was not sent.
    Unreachable(io::Error),
    /// Failed after connecting: the request may or may not have been handled.
    Network(io::Error),
}

impl PeerPool {
    pub(crate) fn new(dial_timeout: Duration) -> Arc<PeerPool> {
        Arc::new(PeerPool {
            idle: Mutex::default(),
            last_contact: Mutex::default(),
            dial_timeout,
        })
    }

    /// How long ago `node` last answered an RPC from this node.
    pub(crate) fn last_contact(&self, node: NodeId) -> Option<Duration> {
        self.last_contact
            .lock()
            .expect("contact lock")
            .get(&node)
            .map(|at| at.elapsed())
    }

    async fn dial(&self, addr: &str) -> Result<TcpStream, CallError> {
        let connect = tokio::time::timeout(self.dial_timeout, TcpStream::connect(addr)).await;
        let stream = match connect {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(CallError::Unreachable(e)),
            Err(_) => {
                let e = io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr} timed out"));
                return Err(CallError::Unreachable(e));
            }
        };
        stream.set_nodelay(true).map_err(CallError::Unreachable)?;
        Ok(stream)
    }

    /// One request/response exchange with the node at `addr`, on a pooled connection if
    /// `reuse`, else on a fresh one that is closed afterwards.
    pub(crate) async fn call(
        &self,
        target: Option<NodeId>,
        addr: &str,
        request: &Request,
        timeout: Duration,
        reuse: bool,
    ) -> Result<Response, CallError> {
        let payload = serde_json::to_vec(request).map_err(|e| CallError::Unreachable(io::Error::other(e)))?;
        let exchange = async {
            let pooled = if reuse {
                self.idle.lock().expect("pool lock").get_mut(addr).and_then(Vec::pop)
            } else {
                None
            };
            let mut stream = match pooled {
                Some(stream) => stream,
                None => self.dial(addr).await?,
            };
            wire::write_frame(&mut stream, &payload)
                .await
                .map_err(CallError::Network)?;
            let reply = wire::read_frame(&mut stream)
                .await
                .map_err(CallError::Network)?
                .ok_or_else(|| {
                    CallError::Network(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed the connection",
                    ))
                })?;
            let response: Response = serde_json::from_slice(&reply)
                .map_err(|e| CallError::Network(io::Error::new(io::ErrorKind::InvalidData, e)))?;
            Ok::<_, CallError>((stream, response))
        };
        let (stream, response) = match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result?,
            Err(_) => {
                let e = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer from {addr} within {timeout:?}"),
                );
                return Err(CallError::Network(e));
            }
        };
        if let Some(target) = target {
            self.last_contact
                .lock()
                .expect("contact lock")
                .insert(target, Instant::now());
        }
        if reuse {
            let mut idle = self.idle.lock().expect("pool lock");
            let idle = idle.entry(addr.to_string()).or_default();
            if idle.len() < IDLE_CONNECTIONS_PER_PEER_MAX {
                idle.push(stream);
            }
        }
        Ok(response)
    }

    /// Asks the node at `addr` (believed leader) to propose `command`.
    pub(crate) async fn forward(
        &self,
        addr: &str,
        command: Command,
        timeout: Duration,
    ) -> Result<Result<u64, ForwardError>, CallError> {
        // A fresh connection: a pooled one the leader has since closed would fail after sending,
        // which for a proposal is ambiguous.
        match self
            .call(None, addr, &Request::Forward(command), timeout, false)
            .await?
        {
            Response::Forward(result) => Ok(result),
            other => Err(unexpected(&other)),
        }
    }
}

impl PeerPool {
    /// Hands an application request to the node at `addr`.
    pub(crate) async fn call_app(
        &self,
        addr: &str,
        request: String,
        timeout: Duration,
    ) -> Result<Result<String, String>, CallError> {
        // A fresh connection, as for forwarded proposals: the request may not be idempotent.
        match self.call(None, addr, &Request::Call(request), timeout, false).await? {
            Response::Call(result) => Ok(result),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(response: &Response) -> CallError {
    let what = match response {
        Response::AppendEntries(_) => "AppendEntries",
        Response::Vote(_) => "Vote",
        Response::InstallSnapshot(_) => "InstallSnapshot",
        Response::Forward(_) => "Forward",
        Response::Call(_) => "Call",
    };
    CallError::Network(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected {what} response"),
    ))
}

/// Makes a [`PeerClient`] per target for openraft.
pub(crate) struct NetworkFactory {
    pub(crate) pool: Arc<PeerPool>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            pool: self.pool.clone(),
        }
    }
}

/// openraft's connection to one peer.
pub(crate) struct PeerClient {
    target: NodeId,
    addr: String,
    pool: Arc<PeerPool>,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn call<E: std::error::Error>(
        &self,
        request: Request,
        option: &RPCOption,
    ) -> Result<Response, RPCError<NodeId, Node, RaftError<NodeId, E>>> {
        match self
            .pool
            .call(Some(self.target), &self.addr, &request, option.hard_ttl(), true)
            .await
        {
            Ok(response) => Ok(response),
            Err(CallError::Unreachable(e)) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(CallError::Network(e)) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    fn remote<E: std::error::Error>(&self, e: RaftError<NodeId, E>) -> RPCError<NodeId, Node, RaftError<NodeId, E>> {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }

    fn mismatch<E: std::error::Error>(&self, response: &Response) -> RPCError<NodeId, Node, RaftError<NodeId, E>> {
        match unexpected(response) {
            CallError::Network(e) | CallError::Unreachable(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self.call(Request::AppendEntries(rpc), &option).await? {
            Response::AppendEntries(result) => result.map_err(|e| self.remote(e)),
            other => Err(self.mismatch(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self.call(Request::InstallSnapshot(rpc), &option).await? {
            Response::InstallSnapshot(result) => result.map_err(|e| self.remote(e)),
            other => Err(self.mismatch(&other)),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        match self.call(Request::Vote(rpc), &option).await? {
            Response::Vote(result) => result.map_err(|e| self.remote(e)),
            other => Err(self.mismatch(&other)),
        }
    }
}
