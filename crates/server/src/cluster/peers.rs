//! Brokers asking other brokers, over the Kafka protocol on their client listeners: a
//! follower's fetches ([`PeerConnection`], one long-lived connection per leader), and the
//! transaction coordinators' calls ([`Peers::call`]): WriteTxnMarkers to partition leaders,
//! AddPartitionsToTxn (KIP-890's verification) from partition leaders and group coordinators
//! to a transaction coordinator.
//!
//! A connection carries one request at a time. [`Peers`] keeps the idle ones per broker, so
//! concurrent calls to one broker each take their own connection and a quiet one is reused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Cluster;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Idle connections kept per broker; more concurrent calls open more, closed after use.
const IDLE_PER_BROKER: usize = 4;

/// A connection to another broker's client listener.
pub(crate) struct PeerConnection {
    stream: TcpStream,
    correlation_id: i32,
    client_id: String,
}

impl PeerConnection {
    /// Connects to broker `id` at the listener its registration names.
    pub(crate) async fn connect(cluster: &Cluster, id: i32) -> Result<PeerConnection, String> {
        let image = cluster.image();
        let registration = image
            .broker(id)
            .ok_or_else(|| format!("broker {id} is not registered"))?;
        let endpoint = registration
            .endpoints
            .first()
            .ok_or_else(|| format!("broker {id} has no listener"))?;
        let address = format!("{}:{}", endpoint.host, endpoint.port);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&address))
            .await
            .map_err(|_| format!("connecting to {address} timed out"))?
            .map_err(|e| format!("connecting to {address}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(PeerConnection {
            stream,
            correlation_id: 0,
            client_id: format!("strom-broker-{}", cluster.node_id),
        })
    }

    /// Sends one request and reads its answer, within `timeout`. Any error leaves the
    /// connection unusable: the caller drops it.
    pub(crate) async fn exchange<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
        timeout: Duration,
        response_bytes_max: usize,
    ) -> Result<Resp, String> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let frame = strom_protocol::client::encode_request(api, version, self.correlation_id, &self.client_id, request)
            .map_err(|e| e.to_string())?;
        let exchange = async {
            self.stream.write_all(&frame).await.map_err(|e| e.to_string())?;
            let mut size = [0u8; 4];
            self.stream.read_exact(&mut size).await.map_err(|e| e.to_string())?;
            let size = i32::from_be_bytes(size);
            if size < 0 || size as usize > response_bytes_max {
                return Err(format!("response of {size} bytes refused"));
            }
            let mut body = BytesMut::zeroed(size as usize);
            self.stream.read_exact(&mut body).await.map_err(|e| e.to_string())?;
            Ok::<Bytes, String>(body.freeze())
        };
        let body = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))??;
        let (correlation_id, response) =
            strom_protocol::client::decode_response::<Resp>(api, version, body).map_err(|e| e.to_string())?;
        if correlation_id != self.correlation_id {
            return Err(format!(
                "answer to request {correlation_id} while waiting for {}",
                self.correlation_id
            ));
        }
        Ok(response)
    }
}

/// Idle connections to other brokers, for request/answer calls.
#[derive(Default)]
pub(crate) struct Peers {
    idle: Mutex<HashMap<i32, Vec<PeerConnection>>>,
}

/// Answers of calls are small (per-partition error codes).
const CALL_RESPONSE_MAX: usize = 16 * 1024 * 1024;

impl Peers {
    /// Sends `request` to broker `to` and waits for its answer, within `timeout`.
    pub(crate) async fn call<Req: Encodable, Resp: Decodable>(
        &self,
        cluster: &Cluster,
        to: i32,
        api: ApiKey,
        version: i16,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, String> {
        let idle = self.idle.lock().expect("peers lock").get_mut(&to).and_then(Vec::pop);
        let reused = idle.is_some();
        let mut connection = match idle {
            Some(connection) => connection,
            None => PeerConnection::connect(cluster, to).await?,
        };
        let mut answer = connection
            .exchange(api, version, request, timeout, CALL_RESPONSE_MAX)
            .await;
        if answer.is_err() && reused {
            // An idle connection may have died with its broker's restart; the calls made
            // here are safe to repeat, so once more on a new one.
            connection = PeerConnection::connect(cluster, to).await?;
            answer = connection
                .exchange(api, version, request, timeout, CALL_RESPONSE_MAX)
                .await;
        }
        let answer = answer?;
        let mut idle = self.idle.lock().expect("peers lock");
        let kept = idle.entry(to).or_default();
        if kept.len() < IDLE_PER_BROKER {
            kept.push(connection);
        }
        Ok(answer)
    }
}
