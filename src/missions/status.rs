//! A mission's state, as the column constrains it (migration 0002) and the seed spells it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "TEXT", rename_all = "snake_case")]
pub enum MissionStatus {
    /// Created; no turn yet.
    Pending,
    /// Taking turns.
    Active,
    Completed,
    Failed,
    /// A turn was cut off (berth stopped, or a cancel); `resume` goes on.
    Interrupted,
    /// Waiting for the user (Open Agent's dashboard sets it).
    Blocked,
    /// Judged impossible (Open Agent's dashboard sets it).
    NotFeasible,
}

impl MissionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Blocked => "blocked",
            Self::NotFeasible => "not_feasible",
        }
    }
}

impl std::fmt::Display for MissionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
