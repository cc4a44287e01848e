//! The states of the agent API's objects, as the columns constrain them (migration 0003) and as the
//! seed's shapes spell them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A task's place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
pub enum TaskStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 5] = [
        Self::Pending,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the task has ended for good.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a codebase's agent is doing: its workspace still `building`, `idle`, `running` a task or a
/// turn, its workspace in `error` or `stopped`. A worker's codebase is `idle` or `running`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CodebaseStatus {
    Building,
    Idle,
    Running,
    Error,
    /// Its workspace was stopped by its owner; a trigger starts it again.
    Stopped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_spelled_as_the_columns_and_the_seed_spell_them() {
        for s in TaskStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            let back: TaskStatus = serde_json::from_value(serde_json::json!(s.as_str())).unwrap();
            assert_eq!(back, s);
        }
        assert!(serde_json::from_value::<TaskStatus>(serde_json::json!("weird")).is_err());
        assert_eq!(
            serde_json::to_value(CodebaseStatus::Building).unwrap(),
            "building"
        );
    }
}
