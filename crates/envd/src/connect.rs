//! Connect's framing, the part both ends share: the envelope of streamed messages, the end-of-stream
//! frame, the error body and its codes, and the content types.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

pub const UNARY_PROTO: &str = "application/proto";
pub const STREAM_PROTO: &str = "application/connect+proto";
/// An envelope's flag: the last frame of a stream, whose body is JSON (`{}` or `{"error": ...}`).
pub const END_STREAM: u8 = 0x02;
pub const COMPRESSED: u8 = 0x01;

/// Connect's error codes with the HTTP status a unary error answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    Canceled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl Code {
    pub fn http_status(self) -> u16 {
        match self {
            Code::Canceled => 499,
            Code::Unknown | Code::Internal | Code::DataLoss => 500,
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
            Code::DeadlineExceeded => 504,
            Code::NotFound => 404,
            Code::AlreadyExists | Code::Aborted => 409,
            Code::PermissionDenied => 403,
            Code::ResourceExhausted => 429,
            Code::Unimplemented => 501,
            Code::Unavailable => 503,
            Code::Unauthenticated => 401,
        }
    }
}

/// Connect's error body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Error {
    pub code: Code,
    #[serde(default)]
    pub message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

/// The body of the end-of-stream frame.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct EndOfStream {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
}

/// One enveloped message.
pub fn envelope(flags: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u8(flags);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

/// A message as an envelope.
pub fn frame<M: prost::Message>(m: &M) -> Bytes {
    envelope(0, &m.encode_to_vec())
}

/// The end-of-stream envelope, with the error that ended the stream if any.
pub fn end_frame(error: Option<Error>) -> Bytes {
    let body = serde_json::to_vec(&EndOfStream { error }).unwrap_or_else(|_| b"{}".to_vec());
    envelope(END_STREAM, &body)
}

/// Splits envelopes off a growing buffer: pushes bytes in, takes whole frames out.
#[derive(Default)]
pub struct Deframer {
    buf: BytesMut,
}

/// A frame read off a stream.
pub struct Frame {
    pub flags: u8,
    pub payload: Bytes,
}

impl Deframer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if one has arrived; frames over `max` bytes are an error.
    pub fn next(&mut self, max: usize) -> Result<Option<Frame>, Error> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > max {
            return Err(Error::new(
                Code::ResourceExhausted,
                format!("a message of {len} bytes is over the limit of {max}"),
            ));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let flags = self.buf.get_u8();
        self.buf.advance(4);
        let payload = self.buf.split_to(len).freeze();
        Ok(Some(Frame { flags, payload }))
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

pub const UNARY_JSON: &str = "application/json";
pub const STREAM_JSON: &str = "application/connect+json";

/// A message both codecs can carry.
pub trait Msg:
    prost::Message + Default + Serialize + for<'de> Deserialize<'de> + Send + 'static
{
}

impl<T> Msg for T where
    T: prost::Message + Default + Serialize + for<'de> Deserialize<'de> + Send + 'static
{
}

/// Connect's two codecs: binary protobuf (what berth uses) and protobuf's JSON mapping (what E2B's SDKs
/// use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Proto,
    Json,
}

impl Codec {
    /// The codec a request's content type names, for unary calls or streams.
    pub fn of(content_type: &str, streaming: bool) -> Option<Self> {
        let ct = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match (ct.as_str(), streaming) {
            (UNARY_PROTO, false) | (STREAM_PROTO, true) => Some(Self::Proto),
            (UNARY_JSON, false) | (STREAM_JSON, true) => Some(Self::Json),
            _ => None,
        }
    }

    pub fn content_type(self, streaming: bool) -> &'static str {
        match (self, streaming) {
            (Self::Proto, false) => UNARY_PROTO,
            (Self::Proto, true) => STREAM_PROTO,
            (Self::Json, false) => UNARY_JSON,
            (Self::Json, true) => STREAM_JSON,
        }
    }

    pub fn encode<M: Msg>(self, m: &M) -> Vec<u8> {
        match self {
            Self::Proto => m.encode_to_vec(),
            Self::Json => serde_json::to_vec(m).unwrap_or_else(|_| b"{}".to_vec()),
        }
    }

    pub fn decode<M: Msg>(self, bytes: &[u8]) -> Result<M, Error> {
        let bad = |e: &dyn std::fmt::Display| {
            Error::new(Code::InvalidArgument, format!("decode the message: {e}"))
        };
        match self {
            Self::Proto => M::decode(bytes).map_err(|e| bad(&e)),
            // An empty JSON body is the empty message.
            Self::Json if bytes.iter().all(u8::is_ascii_whitespace) => Ok(M::default()),
            Self::Json => serde_json::from_slice(bytes).map_err(|e| bad(&e)),
        }
    }

    /// A message as an envelope of a stream.
    pub fn frame<M: Msg>(self, m: &M) -> Bytes {
        envelope(0, &self.encode(m))
    }
}
