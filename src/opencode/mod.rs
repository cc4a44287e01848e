//! OpenCode: the pinned binary, a client of its server API, and the runtime that runs one server per
//! workspace.

pub mod binary;
pub mod client;
pub mod runtime;
mod sse;

pub use client::Client;
pub use runtime::Runtime;
