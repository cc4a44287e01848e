-- The agent server berth started in each workspace, so a restarted berth reattaches to one that kept
-- running (and to the turn it may still be working on). The password is sealed like env var values.
CREATE TABLE agent_servers (
    workspace_id TEXT PRIMARY KEY NOT NULL,
    url          TEXT NOT NULL,
    password     TEXT NOT NULL,
    config_hash  TEXT NOT NULL,
    started_at   TEXT NOT NULL
);
-- When a message's prompt reached OpenCode: a resumed message whose prompt already did is continued,
-- never sent again (its tool calls would run twice).
ALTER TABLE mission_messages ADD COLUMN delivered_at TEXT;
