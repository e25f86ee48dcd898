//! The Kafka wire protocol as Strom speaks it: bytes in, bytes out.
//!
//! No sockets and no files live here. The server reads bytes from a connection, hands them to
//! [`frame::FrameDecoder`] to cut out whole request frames, decodes each with
//! [`request::decode_request`] and encodes the answer with [`response::encode_response`].
//! Message bodies are the `kafka-protocol` crate's types; this crate adds the rules around them.
//!
//! # Layout
//! - [`frame`]: length-prefixed framing with the request size cap checked before buffering.
//! - [`apis`]: the one table of supported APIs and versions; ApiVersions is derived from it.
//! - [`request`]: header and body decoding, with the errors that decide close-or-answer.
//! - [`produce_shape`]: counts a Produce body's entries without a batch before it is decoded.
//! - [`response`]: response header and body encoding, and the ApiVersions v0 fallback.
//! - [`errors`]: Kafka error codes, and the mapping from record batch errors to them.
//! - [`client`]: a request out and its response in, for brokers asking other brokers.

pub mod apis;
pub mod client;
pub mod errors;
pub mod frame;
pub mod produce_shape;
pub mod request;
pub mod response;

pub use kafka_protocol;
pub use kafka_protocol::messages::ApiKey;
pub use kafka_protocol::ResponseError;
