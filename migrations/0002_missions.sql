-- Network mode of a workspace container: bridge (default), host or none.
ALTER TABLE workspaces ADD COLUMN network TEXT NOT NULL DEFAULT 'bridge';

-- Missions: an agent conversation bound to a workspace, owned by one user.
CREATE TABLE missions (
    id                  TEXT PRIMARY KEY NOT NULL,
    owner               TEXT NOT NULL,
    title               TEXT,
    status              TEXT NOT NULL CHECK (status IN ('pending', 'active', 'completed', 'failed', 'interrupted')),
    workspace_id        TEXT NOT NULL,
    agent               TEXT,
    model_override      TEXT,
    model_effort        TEXT,
    opencode_session_id TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);

-- Every event, stored before it is broadcast. `id` orders all events (the SSE id); `seq` numbers each
-- mission's own events from 1.
CREATE TABLE mission_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    mission_id  TEXT NOT NULL,
    owner       TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    event_type  TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (mission_id, seq)
);
CREATE INDEX mission_events_owner ON mission_events (owner, id);

-- User messages, queued while the agent works and run in order.
CREATE TABLE mission_messages (
    id          TEXT PRIMARY KEY NOT NULL,
    mission_id  TEXT NOT NULL,
    position    INTEGER NOT NULL,
    content     TEXT NOT NULL,
    agent       TEXT,
    status      TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled', 'interrupted')),
    created_at  TEXT NOT NULL
);
CREATE INDEX mission_messages_queue ON mission_messages (mission_id, status, position);

-- Each user's control session: the mission loaded for `POST /api/control/message`.
CREATE TABLE control_sessions (
    owner       TEXT PRIMARY KEY NOT NULL,
    mission_id  TEXT
);

-- API keys set through the providers API, sealed with the data dir's secret key.
CREATE TABLE provider_keys (
    provider_id TEXT PRIMARY KEY NOT NULL,
    api_key     TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
