//! The LLM gateway: workspaces' agent servers call LLM providers through berth, which adds the provider's
//! key on the host side, so no key ever enters a workspace. Each workspace has its own gateway token
//! (its agent configuration names the gateway and that token, never a key); the provider's answer is
//! passed through as it is (streaming, tool calls, errors), and the tokens it reports are counted per
//! workspace and user. Providers listening on the host's loopback become usable from bridge workspaces.

pub mod listeners;
mod routing;
mod usage;

pub use listeners::Listeners;
pub use routing::{route_through, upstream, Upstream};
pub use usage::UsageTap;

use crate::secrets::{self, SecretBox};
use crate::store::Store;

/// Tokens start so, to be told from other credentials at a glance.
const TOKEN_PREFIX: &str = "bgw_";

/// The workspace's gateway token, made on first use (stored hashed for lookup and sealed for the
/// workspace's configuration).
pub async fn token_for(
    store: &Store,
    secrets: &SecretBox,
    workspace_id: &str,
    owner: &str,
) -> anyhow::Result<String> {
    if let Some(sealed) = store.gateway_token(workspace_id).await? {
        return secrets.unseal(&sealed);
    }
    let token = format!("{TOKEN_PREFIX}{}", secrets::random_hex(24));
    let hash = secrets::sha256_hex(token.as_bytes());
    if store
        .insert_gateway_token(workspace_id, owner, &hash, &secrets.seal(&token))
        .await?
    {
        return Ok(token);
    }
    // Made meanwhile by another request.
    let sealed = store
        .gateway_token(workspace_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the gateway token vanished"))?;
    secrets.unseal(&sealed)
}

/// `(workspace, owner)` a token stands for, while the workspace exists.
pub async fn resolve(store: &Store, token: &str) -> anyhow::Result<Option<(String, String)>> {
    if !token.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    store
        .gateway_token_owner(&secrets::sha256_hex(token.as_bytes()))
        .await
}
