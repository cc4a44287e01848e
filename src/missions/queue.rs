//! A mission's message queue: messages wait in order, one runner per mission works through them a turn
//! at a time, cancel aborts the turn and drops what waits, and resume picks up an interrupted mission.

use serde_json::{json, Value};

use super::{MissionStatus, MissionView, Missions, MAX_MESSAGE};
use crate::error::{ApiError, ApiResult};
use crate::principal::Principal;
use crate::workspaces::model::Status as WsStatus;

impl Missions {
    /// Queues a message on the user's loaded mission; `(message id, queued)`.
    pub async fn message(
        &self,
        who: &Principal,
        content: &str,
        agent: Option<&str>,
    ) -> ApiResult<(String, bool)> {
        if content.trim().is_empty() {
            return Err(ApiError::invalid("content must not be empty"));
        }
        if content.len() > MAX_MESSAGE || content.contains('\0') {
            return Err(ApiError::invalid(
                "content must be under 1 MiB of text without NUL bytes",
            ));
        }
        if let Some(a) = agent {
            self.check_agent_name(a).await?;
        }
        let mission_id = self
            .inner
            .store
            .loaded_mission(&who.name)
            .await?
            .ok_or_else(|| {
                ApiError::conflict(
                    "no mission is loaded; POST /api/control/missions/:id/load first",
                )
            })?;
        let m = self.owned(who, &mission_id).await?;
        match m.status {
            MissionStatus::Pending | MissionStatus::Active => {}
            MissionStatus::Interrupted => {
                return Err(ApiError::conflict(
                    "the mission was interrupted; POST resume first",
                ))
            }
            s => {
                return Err(ApiError::conflict(format!(
                    "the mission is {s}; set it active to continue"
                )))
            }
        }
        match self.inner.workspaces.get(&m.workspace_id).await {
            Ok(ws) if ws.status == WsStatus::Ready => {}
            Ok(ws) => {
                return Err(ApiError::conflict(format!(
                    "the mission's workspace {} is {}, not ready",
                    ws.name,
                    ws.status.as_str()
                )))
            }
            Err(ApiError::NotFound(_)) => {
                return Err(ApiError::conflict("the mission's workspace was deleted"))
            }
            Err(e) => return Err(e),
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.inner
            .store
            .queue_message(&id, &m.id, content, agent)
            .await?;
        let queued = self.inner.store.pending_messages(&m.id, &id).await? > 0;
        self.inner
            .hub
            .emit(
                &m.id,
                &m.owner,
                "user_message",
                json!({ "message_id": id, "content": content, "agent": agent, "queued": queued }),
            )
            .await;
        self.kick(&m.id).await;
        Ok((id, queued))
    }

    /// Makes sure a runner works through the mission's queue.
    pub(super) async fn kick(&self, mission_id: &str) {
        let mut runners = self.inner.runners.lock().await;
        if runners.contains_key(mission_id) {
            return;
        }
        runners.insert(mission_id.to_string(), None);
        let this = self.clone();
        let id = mission_id.to_string();
        self.inner
            .tracker
            .spawn(async move { this.run_queue(id).await });
    }

    async fn run_queue(&self, mission_id: String) {
        loop {
            let next = match self.inner.store.claim_message(&mission_id).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(mission.id = %mission_id, error = %e, "claiming the next message failed");
                    None
                }
            };
            let Some(msg) = next else {
                // Leave only if nothing was queued meanwhile; `kick` holds the same lock.
                let mut runners = self.inner.runners.lock().await;
                match self.inner.store.pending_messages(&mission_id, "").await {
                    Ok(0) | Err(_) => {
                        runners.remove(&mission_id);
                        return;
                    }
                    Ok(_) => continue,
                }
            };
            let token = self.inner.shutdown.child_token();
            self.inner
                .runners
                .lock()
                .await
                .insert(mission_id.clone(), Some(token.clone()));
            self.run_turn(&mission_id, msg, token).await;
            self.inner
                .runners
                .lock()
                .await
                .insert(mission_id.clone(), None);
        }
    }

    /// Aborts the running turn and drops queued messages of the mission (the loaded one when `None`).
    pub async fn cancel(&self, who: &Principal, mission_id: Option<&str>) -> ApiResult<Value> {
        let id = match mission_id {
            Some(id) => id.to_string(),
            None => self
                .inner
                .store
                .loaded_mission(&who.name)
                .await?
                .ok_or_else(|| ApiError::conflict("no mission is loaded"))?,
        };
        let m = self.owned(who, &id).await?;
        let dropped = self
            .inner
            .store
            .move_messages(&m.id, "queued", "cancelled")
            .await?;
        let turn = self
            .inner
            .runners
            .lock()
            .await
            .get(&m.id)
            .cloned()
            .flatten();
        let running = turn.is_some();
        if let Some(t) = turn {
            t.cancel();
        }
        if !running && dropped == 0 {
            return Err(ApiError::conflict("the mission is idle: nothing to cancel"));
        }
        Ok(json!({ "cancelled": true, "running_turn": running, "dropped_messages": dropped }))
    }

    pub async fn resume(&self, who: &Principal, id: &str) -> ApiResult<MissionView> {
        let m = self.owned(who, id).await?;
        if !self
            .inner
            .store
            .transition_mission(&m.id, &[MissionStatus::Interrupted], MissionStatus::Active)
            .await?
        {
            return Err(ApiError::conflict(format!(
                "only interrupted missions resume; this one is {}",
                m.status
            )));
        }
        let requeued = self
            .inner
            .store
            .move_messages(&m.id, "interrupted", "queued")
            .await?;
        self.inner
            .hub
            .emit(
                &m.id,
                &m.owner,
                "status",
                json!({ "status": "active", "resumed": true, "requeued_messages": requeued }),
            )
            .await;
        self.kick(&m.id).await;
        self.get(who, id).await
    }

    /// Whether a turn of the mission runs or is about to.
    pub async fn is_busy(&self, mission_id: &str) -> bool {
        self.inner.runners.lock().await.contains_key(mission_id)
    }
}
