-- E2B sandboxes: berth workspaces created through the E2B-compatible API, with what E2B keeps about
-- them (template, metadata, when their timeout ends and whether they pause then, the envd access token
-- of a secure one, sealed so `connect` can hand it out again).
CREATE TABLE e2b_sandboxes (
    workspace_id  TEXT PRIMARY KEY NOT NULL,
    owner         TEXT NOT NULL,
    template_id   TEXT NOT NULL,
    metadata      TEXT NOT NULL DEFAULT '{}',
    started_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    auto_pause    INTEGER NOT NULL DEFAULT 0,
    token_sealed  TEXT
);
CREATE INDEX e2b_sandboxes_expires ON e2b_sandboxes (expires_at);
