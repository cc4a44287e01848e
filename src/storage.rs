//! The data dir's free space: telling a write that failed for lack of it (SQLite's `SQLITE_FULL`, an
//! `ENOSPC` from the file system) from other failures, and how full the data dir is for `/api/health`.

use std::path::Path;

use serde::Serialize;

/// SQLite's primary result code for "database or disk is full".
const SQLITE_FULL: &str = "13";
/// `ENOSPC` and `EDQUOT`: no space, or over quota.
const NO_SPACE_ERRNOS: [i32; 2] = [28, 122];

/// Whether anything in `e`'s chain says the disk is full.
pub fn is_full(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        if let Some(sqlx::Error::Database(db)) = cause.downcast_ref::<sqlx::Error>() {
            return db.code().as_deref() == Some(SQLITE_FULL);
        }
        if let Some(sqlx::Error::Io(io)) = cause.downcast_ref::<sqlx::Error>() {
            return io_full(io);
        }
        cause.downcast_ref::<std::io::Error>().is_some_and(io_full)
    })
}

fn io_full(e: &std::io::Error) -> bool {
    e.raw_os_error()
        .is_some_and(|code| NO_SPACE_ERRNOS.contains(&code))
}

/// The file system holding the data dir.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Space {
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Too little left to record state safely: writes are failing or about to.
    pub full: bool,
}

/// Below this much free space (or 5% of a small disk) the data dir counts as full.
const FULL_BELOW_BYTES: u64 = 64 * 1024 * 1024;

pub fn space(dir: &Path) -> std::io::Result<Space> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    let unit = st.fragment_size() as u64;
    let free_bytes = st.blocks_available() as u64 * unit;
    let total_bytes = st.blocks() as u64 * unit;
    let margin = FULL_BELOW_BYTES.min(total_bytes / 20);
    Ok(Space {
        free_bytes,
        total_bytes,
        full: free_bytes <= margin,
    })
}
