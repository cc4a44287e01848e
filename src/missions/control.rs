//! What a control client watches besides the events: each mission's conversation so far, the mission
//! the caller has loaded, which missions are working, and the messages waiting their turn (Open
//! Agent's dashboard draws its chat, its overview and its queue from these).

use chrono::Utc;
use serde_json::{json, Value};

use super::{MissionView, Missions};
use crate::error::{ApiError, ApiResult};
use crate::principal::Principal;
use crate::store::missions::MessageRow;

/// A mission at work: running a turn, or with messages waiting.
#[derive(Debug)]
pub struct Working {
    pub mission_id: String,
    pub running: bool,
    pub queue_len: usize,
    pub history_len: usize,
    pub seconds_since_activity: i64,
}

impl Missions {
    /// The conversation so far: `(role, content)` of each user message and answer, in order.
    pub(super) async fn history(&self, mission_id: &str) -> Vec<(String, String)> {
        let types = ["user_message".to_string(), "assistant_message".to_string()];
        let rows = self
            .inner
            .store
            .mission_events(mission_id, &types, 10_000, 0)
            .await
            .unwrap_or_default();
        rows.into_iter()
            .map(|r| {
                let data: Value = serde_json::from_str(&r.data).unwrap_or_default();
                let role = if r.event_type == "user_message" {
                    "user"
                } else {
                    "assistant"
                };
                let content = data["content"].as_str().unwrap_or_default().to_string();
                (role.to_string(), content)
            })
            .collect()
    }

    /// The mission the caller has loaded, if any (and it still exists).
    pub async fn current(&self, who: &Principal) -> ApiResult<Option<MissionView>> {
        let Some(id) = self.inner.store.loaded_mission(&who.name).await? else {
            return Ok(None);
        };
        match self.owned(who, &id).await {
            Ok(m) => Ok(Some(self.view(m).await)),
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The caller's missions (everyone's for an admin) that run a turn or have messages waiting.
    pub async fn working(&self, who: &Principal) -> ApiResult<Vec<Working>> {
        let mut out = Vec::new();
        for m in self.inner.store.list_missions(who.listing_owner()).await? {
            let running = self.is_busy(&m.id).await;
            let queue_len =
                self.inner.store.pending_messages(&m.id, "").await? as usize - usize::from(running);
            if !running && queue_len == 0 {
                continue;
            }
            // Counted, not read: the overview polls this every few seconds.
            let history_len = self
                .inner
                .store
                .count_mission_events(&m.id, &["user_message", "assistant_message"])
                .await? as usize;
            out.push(Working {
                seconds_since_activity: (Utc::now() - m.updated_at).num_seconds().max(0),
                mission_id: m.id,
                running,
                queue_len,
                history_len,
            });
        }
        Ok(out)
    }

    /// The caller's control state, as the first frame of their stream: whether the loaded mission's
    /// agent works, and how many messages wait.
    pub async fn control_state(&self, who: &Principal) -> ApiResult<Value> {
        let Some(id) = self.inner.store.loaded_mission(&who.name).await? else {
            return Ok(
                json!({ "status": "idle", "state": "idle", "queue_len": 0, "mission_id": null }),
            );
        };
        let running = self.is_busy(&id).await;
        let queue_len = self.inner.store.queued_count(&id).await?;
        let state = if running { "running" } else { "idle" };
        Ok(json!({ "status": state, "state": state, "queue_len": queue_len, "mission_id": id }))
    }

    /// Messages waiting their turn in the caller's own missions.
    pub async fn queued(&self, who: &Principal) -> ApiResult<Vec<MessageRow>> {
        Ok(self.inner.store.queued_messages_of(&who.name).await?)
    }

    /// Drops one waiting message of the caller's (404 for any other), or all of them; how many.
    pub async fn drop_queued(&self, who: &Principal, id: Option<&str>) -> ApiResult<u64> {
        let n = self.inner.store.drop_queued(&who.name, id).await?;
        if let (Some(id), 0) = (id, n) {
            return Err(ApiError::not_found(format!(
                "no queued message with id {id}"
            )));
        }
        Ok(n)
    }
}
