//! Mission events: each is stored with its sequence number first, then announced. Subscribers do not
//! receive events through a channel that could overflow: they are told the newest id and read what they
//! have not seen from the store, so a slow client is caught up, never dropped.

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use utoipa::ToSchema;

use crate::store::missions::EventRow;
use crate::store::Store;

#[derive(Clone)]
pub struct Hub {
    store: Store,
    latest: watch::Sender<i64>,
}

/// An event as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Event {
    /// Global order; the SSE `id`.
    pub id: i64,
    pub mission_id: String,
    /// The mission's own sequence number, from 1.
    pub seq: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<EventRow> for Event {
    fn from(r: EventRow) -> Self {
        Self {
            id: r.id,
            mission_id: r.mission_id,
            seq: r.seq,
            event_type: r.event_type,
            data: serde_json::from_str(&r.data).unwrap_or(Value::Null),
            created_at: r.created_at,
        }
    }
}

impl Hub {
    pub async fn new(store: Store) -> anyhow::Result<Self> {
        let last = store.last_event_id().await?;
        Ok(Self {
            store,
            latest: watch::channel(last).0,
        })
    }

    /// Stores, then announces. A failure to store is logged and the event is not announced: clients
    /// only ever see what the store holds.
    pub async fn emit(
        &self,
        mission_id: &str,
        owner: &str,
        event_type: &str,
        data: Value,
    ) -> Option<Event> {
        match self
            .store
            .append_event(mission_id, owner, event_type, &data.to_string())
            .await
        {
            Ok(row) => {
                self.latest.send_replace(row.id);
                Some(row.into())
            }
            Err(e) => {
                tracing::error!(mission.id = %mission_id, error = %e, "storing a mission event failed");
                None
            }
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.latest.subscribe()
    }

    pub fn latest(&self) -> i64 {
        *self.latest.borrow()
    }
}
