//! E2B's envd protocol, written from the published definitions in github:e2b-dev/E2B (`spec/envd/`):
//! the `process.Process` and `filesystem.Filesystem` messages (field numbers and names are the wire facts)
//! and the Connect framing both ends use. berth's resident agent serves it; berth calls it.
//!
//! berth extends two messages with fields numbered from 100, which E2B's clients skip as unknown:
//! a stream event's sequence number, and the event to resume after when reconnecting.

pub mod connect;
pub mod filesystem;
pub mod json;
pub mod process;

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}
