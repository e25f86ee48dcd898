//! Responses waiting to be written to a connection, in order: encoded bytes, and record sets
//! that stay in their segment files until `sendfile` hands them to the socket.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsFd;

use bytes::{Bytes, BytesMut};
use strom_protocol::response::Piece;
use strom_storage::{FileChunk, ReadSlice};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

enum OutPiece {
    Bytes(Bytes),
    File(FileChunk),
}

#[derive(Default)]
pub(crate) struct Outbox {
    pieces: VecDeque<OutPiece>,
    /// Small responses are encoded straight into this buffer and sent with one write.
    inline: BytesMut,
    queued_bytes: usize,
}

impl Outbox {
    /// Where the next response is encoded, when it is all bytes.
    pub(crate) fn inline_mut(&mut self) -> &mut BytesMut {
        &mut self.inline
    }

    /// Bytes waiting to be sent.
    pub(crate) fn len(&self) -> usize {
        self.queued_bytes + self.inline.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn seal_inline(&mut self) {
        if !self.inline.is_empty() {
            self.queued_bytes += self.inline.len();
            self.pieces.push_back(OutPiece::Bytes(self.inline.split().freeze()));
        }
    }

    /// Queues a response encoded as pieces; its record holes are filled, in order, by `slices`.
    pub(crate) fn push_pieces(&mut self, pieces: Vec<Piece>, slices: Vec<ReadSlice>) -> Result<(), String> {
        self.seal_inline();
        let mut slices = slices.into_iter();
        for piece in pieces {
            match piece {
                Piece::Bytes(bytes) => {
                    self.queued_bytes += bytes.len();
                    self.pieces.push_back(OutPiece::Bytes(bytes));
                }
                Piece::Records(len) => {
                    let slice = slices.next().ok_or("fewer record slices than placeholders")?;
                    if slice.total_len != len {
                        return Err(format!(
                            "record slice of {} bytes for a {len}-byte placeholder",
                            slice.total_len
                        ));
                    }
                    self.queued_bytes += len;
                    self.pieces.extend(slice.chunks.into_iter().map(OutPiece::File));
                }
            }
        }
        if slices.next().is_some() {
            return Err("more record slices than placeholders".to_string());
        }
        Ok(())
    }

    /// Writes everything queued. On error the connection must be closed: a response may have
    /// been cut short.
    pub(crate) async fn flush(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        self.seal_inline();
        while let Some(piece) = self.pieces.pop_front() {
            match piece {
                OutPiece::Bytes(bytes) => stream.write_all(&bytes).await?,
                OutPiece::File(chunk) => send_file(stream, &chunk).await?,
            }
        }
        self.queued_bytes = 0;
        Ok(())
    }
}

/// Copies a file range to the socket inside the kernel.
async fn send_file(stream: &TcpStream, chunk: &FileChunk) -> io::Result<()> {
    let mut offset = i64::try_from(chunk.position).map_err(|_| io::Error::other("file position out of range"))?;
    let end = offset + chunk.len as i64;
    while offset < end {
        stream.writable().await?;
        let remaining = (end - offset) as usize;
        let sent = stream.try_io(Interest::WRITABLE, || {
            nix::sys::sendfile::sendfile(stream.as_fd(), chunk.file.as_fd(), Some(&mut offset), remaining)
                .map_err(io::Error::from)
        });
        match sent {
            // The file is shorter than the index promised (truncated under us): the response
            // cannot be completed.
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "segment file ended early")),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
