//! What travels between quorum nodes: one request frame, one response frame, on a connection
//! that carries one exchange at a time and is then reused.
//!
//! A frame is `len: u32` (big-endian) then `len` bytes of serde_json; `len` above
//! [`FRAME_BYTES_MAX`] is refused before anything is buffered. TCP already checksums, so frames
//! carry no CRC here (unlike the log's).

use std::io;

use openraft::error::InstallSnapshotError;
use openraft::error::RaftError;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::InstallSnapshotRequest;
use openraft::raft::InstallSnapshotResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use serde::Deserialize;
use serde::Serialize;
use tokio::io::AsyncRead;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;

use crate::config::FRAME_BYTES_MAX;
use crate::types::Command;
use crate::types::NodeId;
use crate::types::TypeConfig;

/// A request from a peer (Raft RPCs) or from a follower forwarding a proposal.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Propose `command` on the receiver, which must be the leader.
    Forward(Command),
    /// An application request for the receiver's [`crate::CallHandler`] (the leader's, as the
    /// caller believes): the application's own protocol, opaque here.
    Call(String),
}

/// The answer to a [`Request`] of the same name.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// The log index the command was applied at on the leader.
    Forward(Result<u64, ForwardError>),
    /// The handler's answer, or why there was none.
    Call(Result<String, String>),
}

/// Why a forwarded proposal was not applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ForwardError {
    /// The receiver is not the leader (the command was not appended): try `leader`.
    NotLeader {
        leader: Option<NodeId>,
        leader_addr: Option<String>,
    },
    /// Anything else; whether the command was appended is unknown.
    Failed(String),
}

/// Writes one frame.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&len| len <= FRAME_BYTES_MAX)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("frame of {} bytes over the maximum", payload.len()),
            )
        })?;
    writer.write_all(&len.to_be_bytes()).await?;
    writer.write_all(payload).await?;
    writer.flush().await
}

/// Reads a frame's length; `None` when the peer closed the connection between frames.
pub(crate) async fn read_frame_len<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<u32>> {
    let mut header = [0u8; 4];
    let mut filled = 0;
    while filled < header.len() {
        let n = reader.read(&mut header[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a frame header",
            ));
        }
        filled += n;
    }
    let len = u32::from_be_bytes(header);
    if len > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {len} over the maximum {FRAME_BYTES_MAX}"),
        ));
    }
    Ok(Some(len))
}

/// Reads a frame body of `len` bytes (already checked against the maximum).
pub(crate) async fn read_frame_body<R: AsyncRead + Unpin>(reader: &mut R, len: u32) -> io::Result<Vec<u8>> {
    let mut body = vec![0u8; len as usize];
    reader.read_exact(&mut body).await?;
    Ok(body)
}

/// Reads a whole frame; `None` on a clean close between frames.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Vec<u8>>> {
    match read_frame_len(reader).await? {
        None => Ok(None),
        Some(len) => read_frame_body(reader, len).await.map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversize_is_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"abc").await.unwrap();
        write_frame(&mut buf, b"").await.unwrap();
        let mut reader = &buf[..];
        assert_eq!(read_frame(&mut reader).await.unwrap().unwrap(), b"abc");
        assert_eq!(read_frame(&mut reader).await.unwrap().unwrap(), b"");
        assert!(read_frame(&mut reader).await.unwrap().is_none());

        let oversize = (FRAME_BYTES_MAX + 1).to_be_bytes();
        let err = read_frame(&mut &oversize[..]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let err = read_frame(&mut &[0u8, 0][..]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
