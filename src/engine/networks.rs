//! One Docker network per bridge workspace: the engine isolates networks from each other, so workspaces
//! never reach one another, and its bridge interface is named `berth…` so the host firewall rules
//! (`crate::firewall`) match every workspace with one pattern.

use std::collections::HashMap;

use bollard::network::{CreateNetworkOptions, ListNetworksOptions};

use super::{labels, Engine, EngineError, EngineResult};

/// The prefix of every workspace network's bridge interface (the firewall matches `berth+`).
pub const BRIDGE_PREFIX: &str = "berth";

/// The engine's name of a workspace's network.
pub fn network_name(workspace_id: &str) -> String {
    format!("berth-ws-{workspace_id}")
}

/// Its bridge interface: `berth` and 10 hex digits of the id (interface names hold 15 characters).
fn bridge_name(workspace_id: &str) -> String {
    let hex: String = workspace_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(10)
        .collect();
    format!("{BRIDGE_PREFIX}{hex}")
}

impl Engine {
    /// Creates the workspace's network unless it exists; its name.
    pub async fn ensure_network(&self, workspace_id: &str) -> EngineResult<String> {
        let name = network_name(workspace_id);
        let existing = self
            .docker
            .inspect_network::<String>(&name, None)
            .await
            .is_ok();
        if existing {
            return Ok(name);
        }
        let options = HashMap::from([
            (
                "com.docker.network.bridge.name".to_string(),
                bridge_name(workspace_id),
            ),
            // One container per network: nothing to talk to on it but the gateway.
            (
                "com.docker.network.bridge.enable_icc".to_string(),
                "false".to_string(),
            ),
        ]);
        match self
            .docker
            .create_network(CreateNetworkOptions {
                name: name.clone(),
                driver: "bridge".to_string(),
                check_duplicate: true,
                labels: labels::for_workspace(&self.instance, workspace_id),
                options,
                ..Default::default()
            })
            .await
        {
            Ok(_) => Ok(name),
            Err(e) => match EngineError::from_bollard(
                format!("create the network of workspace {workspace_id}"),
                e,
            ) {
                // Created meanwhile.
                EngineError::Conflict { .. } => Ok(name),
                e => Err(e),
            },
        }
    }

    /// Removes a network by name; a missing one is not an error.
    pub async fn remove_network(&self, name: &str) -> EngineResult<()> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) => match EngineError::from_bollard(format!("remove network {name}"), e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Names of the networks this instance owns.
    pub async fn list_managed_networks(&self) -> EngineResult<Vec<String>> {
        let list = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: labels::instance_filter(&self.instance),
            }))
            .await
            .map_err(|e| EngineError::from_bollard("list berth networks", e))?;
        Ok(list.into_iter().filter_map(|n| n.name).collect())
    }
}

impl Engine {
    /// The workspace container's address on the network it is attached to (its own, or the default
    /// bridge for an older one): where the host reaches the container's ports.
    pub async fn container_address(
        &self,
        workspace_id: &str,
    ) -> EngineResult<Option<std::net::IpAddr>> {
        let name = super::container_name(workspace_id);
        let Some(c) = self.inspect_container(&name).await? else {
            return Ok(None);
        };
        let networks = c
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        let own = network_name(workspace_id);
        let pick = networks
            .get(&own)
            .or_else(|| networks.get("bridge"))
            .and_then(|e| e.ip_address.clone())
            .filter(|ip| !ip.is_empty());
        Ok(pick.and_then(|ip| ip.parse().ok()))
    }

    /// The address the workspace's container reaches the host at: its own network's gateway, or the
    /// engine's default bridge's for a container built before workspaces had networks of their own.
    pub async fn network_gateway(
        &self,
        workspace_id: &str,
    ) -> EngineResult<Option<std::net::IpAddr>> {
        let container = super::container_name(workspace_id);
        for (name, own) in [
            (network_name(workspace_id), true),
            ("bridge".to_string(), false),
        ] {
            let Ok(net) = self.docker.inspect_network::<String>(&name, None).await else {
                continue;
            };
            let attached = net.containers.as_ref().is_some_and(|c| {
                c.values()
                    .any(|c| c.name.as_deref() == Some(container.as_str()))
            });
            if !own && !attached {
                continue;
            }
            let gateway = net
                .ipam
                .and_then(|i| i.config)
                .into_iter()
                .flatten()
                .find_map(|c| c.gateway?.parse().ok());
            return Ok(gateway);
        }
        Ok(None)
    }
}
