//! Preview URLs: an expiring grant to reach one port of one workspace through berth's host routing
//! (`{port}-{id}.{BERTH_E2B_DOMAIN}`) from a browser, which cannot send a token header. The grant is the
//! workspace id, the port and the expiry sealed with berth's secret key: nothing to store, and nothing
//! but berth can make or alter one. A user's own token reaches the same ports without a grant.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::Workspaces;
use crate::error::{ApiError, ApiResult};

/// How long a grant lasts when the request names no time, and the longest it may ask.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a sealed grant says, before berth checks it.
const KIND: &str = "preview";

impl Workspaces {
    /// A grant to `port` of workspace `id` until `ttl` from now.
    pub fn preview_grant(
        &self,
        id: &str,
        port: u16,
        ttl: Duration,
    ) -> ApiResult<(String, DateTime<Utc>)> {
        if port == 0 {
            return Err(ApiError::invalid("port must be 1 to 65535"));
        }
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(ApiError::invalid(format!(
                "ttl_secs must be 1 to {}",
                MAX_TTL.as_secs()
            )));
        }
        let expires = Utc::now() + chrono::Duration::seconds(ttl.as_secs() as i64);
        let sealed = self
            .inner
            .secrets
            .seal(&format!("{KIND}:{id}:{port}:{}", expires.timestamp()));
        Ok((sealed, expires))
    }

    /// When the grant expires, if it is berth's, for this workspace and port, and not expired yet.
    pub fn preview_allows(&self, grant: &str, id: &str, port: u16) -> Option<DateTime<Utc>> {
        let plain = self.inner.secrets.unseal(grant).ok()?;
        let mut parts = plain.splitn(4, ':');
        let (kind, for_id, for_port, expires) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if kind != KIND || for_id != id || for_port.parse::<u16>().ok()? != port {
            return None;
        }
        let expires = Utc.timestamp_opt(expires.parse().ok()?, 0).single()?;
        (expires > Utc::now()).then_some(expires)
    }
}
