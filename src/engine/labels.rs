//! berth's labels: how it recognises what it owns, and never touches anything else.

use std::collections::HashMap;

pub const MANAGED: &str = "berth.managed";
pub const INSTANCE: &str = "berth.instance";
pub const WORKSPACE: &str = "berth.workspace";

pub fn for_workspace(instance: &str, workspace_id: &str) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (INSTANCE.to_string(), instance.to_string()),
        (WORKSPACE.to_string(), workspace_id.to_string()),
    ])
}

/// An object of this instance that no one workspace owns (a shared image).
pub fn for_instance(instance: &str) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (INSTANCE.to_string(), instance.to_string()),
    ])
}

/// Engine list filter matching everything this instance owns.
pub fn instance_filter(instance: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{MANAGED}=true"), format!("{INSTANCE}={instance}")],
    )])
}
