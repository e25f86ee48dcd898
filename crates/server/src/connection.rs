//! One client connection: read frames, answer each request in order, write responses.
//!
//! Requests on one connection are handled one at a time, as Kafka does; pipelined requests
//! wait in the read buffer, so responses always leave in request order. Responses produced
//! while more requests are already buffered are written together.
//!
//! One exception, for Produce: a Produce whose acks=all appends wait for their replicas does
//! not hold up the connection's next Produce, which is appended meanwhile (appends stay in
//! request order; only the waits overlap). Its response, and every response after it, wait
//! in order in a queue of at most [`REPLICATING_MAX`]. Any other request first waits for the
//! queue to empty, so it sees every earlier Produce answered, as on Kafka. A client writing
//! many partitions with one request per partition (librdkafka) is then acknowledged at the
//! pace of replication, not one replication round trip per partition.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::BytesMut;
use strom_protocol::frame::{memory_weight, FrameDecoder, SIZE_PREFIX_LEN};
use strom_protocol::request::{decode_request, RequestError};
use strom_protocol::response::{api_versions_fallback, encode_response, encode_response_pieces};
use strom_protocol::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};

use crate::broker::Broker;
use crate::handlers::{self, Reply};
use crate::outbox::Outbox;

/// Responses are flushed once this much is buffered even if more requests are waiting.
const WRITE_BUFFER_FLUSH_BYTES: usize = 1024 * 1024;
/// The request header starts with the API key.
const API_KEY_LEN: usize = 2;
/// Initial read buffer; grows to the size of the largest request being read.
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// Produce requests of one connection waiting for their replicas at once (with the responses
/// queued behind them). Each holds only its response and its waits: its records are in the
/// log and its admission permit returned.
pub(crate) const REPLICATING_MAX: usize = 128;

/// Limits on memory for requests being read or handled, shared by all connections: a request's
/// bytes are admitted before its body is buffered (`queued.max.request.bytes`).
pub(crate) struct Admission {
    semaphore: Semaphore,
    /// Permits are KiB so that a 100 MiB request fits in the semaphore's u32 permit count.
    capacity_kib: u32,
}

impl Admission {
    pub(crate) fn new(bytes: usize) -> Self {
        let capacity_kib = (bytes / 1024).clamp(1, u32::MAX as usize >> 4) as u32;
        Admission {
            semaphore: Semaphore::new(capacity_kib as usize),
            capacity_kib,
        }
    }

    async fn admit(&self, frame_bytes: usize) -> tokio::sync::SemaphorePermit<'_> {
        let kib = (frame_bytes.div_ceil(1024) as u32).clamp(1, self.capacity_kib);
        self.semaphore
            .acquire_many(kib)
            .await
            .expect("admission semaphore is never closed")
    }
}

pub(crate) async fn serve(
    broker: Arc<Broker>,
    admission: Arc<Admission>,
    mut stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let decoder = FrameDecoder::new(broker.config.socket_request_max_bytes);
    let mut read_buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut outbox = Outbox::default();
    let mut queue = ReplyQueue::default();
    loop {
        // Answer every request already buffered before reading more.
        while read_buf.len() >= SIZE_PREFIX_LEN {
            let size = i32::from_be_bytes([read_buf[0], read_buf[1], read_buf[2], read_buf[3]]);
            // The decoder refuses bad sizes before anything is buffered for them.
            if let Err(e) = decoder.check_size(size) {
                queue.drain(&mut outbox).await;
                close_with(&mut stream, &mut outbox, peer, &e).await;
                return;
            }
            let frame_len = size as usize;
            // The API key decides the size limit and the memory the request is charged for.
            let api_key_end = SIZE_PREFIX_LEN + API_KEY_LEN.min(frame_len);
            if read_buf.len() < api_key_end {
                if let Err(e) = read_exact(&mut stream, &mut read_buf, api_key_end, &mut shutdown).await {
                    tracing::debug!(%peer, error = %e, "connection closed while reading a request");
                    return;
                }
            }
            let api_key = match read_buf.get(SIZE_PREFIX_LEN..SIZE_PREFIX_LEN + API_KEY_LEN) {
                Some(bytes) => i16::from_be_bytes([bytes[0], bytes[1]]),
                None => -1, // a frame too short for a header; the decoder refuses it
            };
            if let Err(e) = decoder.check_api(api_key, frame_len) {
                queue.drain(&mut outbox).await;
                close_with(&mut stream, &mut outbox, peer, &e).await;
                return;
            }
            // Only a Produce goes ahead of earlier ones still waiting for their replicas.
            let limit = if api_key == ApiKey::Produce as i16 {
                REPLICATING_MAX - 1
            } else {
                0
            };
            if queue.len() > limit && !outbox.is_empty() && outbox.flush(&mut stream).await.is_err() {
                return;
            }
            while queue.len() > limit {
                if queue.pop_into(&mut outbox).await.is_err() {
                    close_with(&mut stream, &mut outbox, peer, &"a response could not be encoded").await;
                    return;
                }
            }
            // Admission control: memory for the request is granted before its body is read,
            // and held until its response is encoded.
            let permit = admission.admit(frame_len.saturating_mul(memory_weight(api_key))).await;
            if read_buf.len() < SIZE_PREFIX_LEN + frame_len {
                if !outbox.is_empty() && outbox.flush(&mut stream).await.is_err() {
                    return;
                }
                if let Err(e) = read_exact(&mut stream, &mut read_buf, SIZE_PREFIX_LEN + frame_len, &mut shutdown).await
                {
                    tracing::debug!(%peer, error = %e, "connection closed while reading a request");
                    return;
                }
            }
            let frame = match decoder.decode(&mut read_buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => unreachable!("a whole frame is buffered"),
                Err(e) => {
                    queue.drain(&mut outbox).await;
                    close_with(&mut stream, &mut outbox, peer, &e).await;
                    return;
                }
            };
            let answered = match answer(&broker, frame, permit, peer, &mut outbox).await {
                Ok(answered) => answered,
                Err(reason) => {
                    queue.drain(&mut outbox).await;
                    close_with(&mut stream, &mut outbox, peer, &reason).await;
                    return;
                }
            };
            if let Some((correlation_id, api_version, reply)) = answered {
                match reply {
                    Reply::Replicating(replicating) => {
                        queue.push(correlation_id, api_version, Box::pin(replicating.reply(broker.clone())))
                    }
                    reply if !queue.is_empty() => {
                        queue.push(correlation_id, api_version, Box::pin(std::future::ready(reply)))
                    }
                    reply => {
                        if let Err(reason) = encode(&mut outbox, correlation_id, api_version, reply) {
                            close_with(&mut stream, &mut outbox, peer, &reason).await;
                            return;
                        }
                    }
                }
            }
            if outbox.len() >= WRITE_BUFFER_FLUSH_BYTES && outbox.flush(&mut stream).await.is_err() {
                return;
            }
        }
        if queue.pop_ready(&mut outbox).is_err() {
            close_with(&mut stream, &mut outbox, peer, &"a response could not be encoded").await;
            return;
        }
        if !outbox.is_empty() && outbox.flush(&mut stream).await.is_err() {
            return;
        }
        if read_buf.capacity() - read_buf.len() < 1024 {
            read_buf.reserve(READ_BUFFER_BYTES);
        }
        tokio::select! {
            read = stream.read_buf(&mut read_buf) => match read {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "read failed");
                    return;
                }
            },
            popped = queue.pop_into(&mut outbox), if !queue.is_empty() => {
                // Whatever is ready behind it goes out in the same write.
                if popped.and_then(|()| queue.pop_ready(&mut outbox)).is_err() {
                    close_with(&mut stream, &mut outbox, peer, &"a response could not be encoded").await;
                    return;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

type PendingReply = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Responses waiting behind a Produce that waits for its replicas, in request order.
#[derive(Default)]
struct ReplyQueue {
    replies: VecDeque<(i32, i16, PendingReply)>,
}

impl ReplyQueue {
    fn len(&self) -> usize {
        self.replies.len()
    }

    fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }

    fn push(&mut self, correlation_id: i32, api_version: i16, reply: PendingReply) {
        self.replies.push_back((correlation_id, api_version, reply));
    }

    /// Waits for the oldest reply and encodes it into the outbox. Cancel-safe: the reply stays
    /// queued until it is ready. Only the oldest is polled; the others see on their turn that
    /// they are replicated (or past their deadline).
    async fn pop_into(&mut self, outbox: &mut Outbox) -> Result<(), String> {
        let Some((_, _, pending)) = self.replies.front_mut() else {
            return Ok(());
        };
        let reply = pending.await;
        let (correlation_id, api_version, _) = self.replies.pop_front().expect("polled above");
        encode(outbox, correlation_id, api_version, reply)
    }

    /// Encodes the replies at the head of the queue that are ready now, without waiting.
    fn pop_ready(&mut self, outbox: &mut Outbox) -> Result<(), String> {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        while let Some((_, _, pending)) = self.replies.front_mut() {
            let std::task::Poll::Ready(reply) = pending.as_mut().poll(&mut context) else {
                break;
            };
            let (correlation_id, api_version, _) = self.replies.pop_front().expect("polled above");
            encode(outbox, correlation_id, api_version, reply)?;
        }
        Ok(())
    }

    /// Encodes every queued reply, in order, before the connection closes.
    async fn drain(&mut self, outbox: &mut Outbox) {
        while !self.is_empty() {
            if self.pop_into(outbox).await.is_err() {
                return;
            }
        }
    }
}

async fn read_exact(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    total: usize,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<()> {
    buf.reserve(total.saturating_sub(buf.len()));
    while buf.len() < total {
        tokio::select! {
            read = stream.read_buf(buf) => if read? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            },
            _ = shutdown.changed() => return Err(std::io::ErrorKind::Interrupted.into()),
        }
    }
    Ok(())
}

/// Sends what is already answered, then closes: the stream cannot be parsed past this point.
async fn close_with(
    stream: &mut TcpStream,
    outbox: &mut Outbox,
    peer: SocketAddr,
    reason: &(dyn std::fmt::Display + Sync),
) {
    tracing::info!(%peer, %reason, "closing connection");
    let _ = outbox.flush(stream).await;
    let _ = stream.shutdown().await;
}

/// Requests whose answer waits on other clients (a JoinGroup until the whole group has
/// rejoined, a SyncGroup until the leader assigns), for as long as a rebalance timeout.
const WAITS_ON_OTHER_CLIENTS: [ApiKey; 2] = [ApiKey::JoinGroup, ApiKey::SyncGroup];

/// Decodes and answers a request, holding the admission `permit` until it is answered; except
/// for requests that wait on other clients, which give it back once decoded. Those hold their
/// frame while they wait (at most 2 MiB, one per connection), not the decode-and-answer weight
/// they were admitted with: otherwise a group's parked joins could exhaust admission and stall
/// every other client until the rebalance times out. Returns the reply with its correlation id
/// and version, or `None` when the answer is already in the outbox. An error means the
/// connection must close.
async fn answer(
    broker: &Arc<Broker>,
    frame: bytes::Bytes,
    permit: tokio::sync::SemaphorePermit<'_>,
    peer: SocketAddr,
    outbox: &mut Outbox,
) -> Result<Option<(i32, i16, Reply)>, String> {
    let request = match decode_request(frame) {
        Ok(request) => request,
        Err(RequestError::UnsupportedVersion {
            api_key: ApiKey::ApiVersions,
            correlation_id,
            ..
        }) => {
            return api_versions_fallback(outbox.inline_mut(), correlation_id)
                .map(|()| None)
                .map_err(|e| e.to_string());
        }
        Err(e) => return Err(e.to_string()),
    };
    let correlation_id = request.correlation_id();
    let api_version = request.api_version;
    let api_key = request.api_key;
    let _permit = (!WAITS_ON_OTHER_CLIENTS.contains(&api_key)).then_some(permit);
    tracing::trace!(
        ?api_key,
        api_version,
        correlation_id,
        client = request.client_id(),
        "request"
    );
    let reply = handlers::handle(broker, request, peer).await;
    Ok(Some((correlation_id, api_version, reply)))
}

/// Queues a reply's response in the outbox.
fn encode(outbox: &mut Outbox, correlation_id: i32, api_version: i16, reply: Reply) -> Result<(), String> {
    match reply {
        Reply::Response(body) => {
            encode_response(outbox.inline_mut(), correlation_id, api_version, &body).map_err(|e| e.to_string())
        }
        Reply::Fetch(body, slices) => {
            let pieces = encode_response_pieces(correlation_id, api_version, &body).map_err(|e| e.to_string())?;
            outbox.push_pieces(pieces, slices)
        }
        Reply::None => Ok(()),
        Reply::Replicating(_) => Err("a reply still waiting for its replicas cannot be encoded".to_string()),
    }
}
