-- Open Agent's mission statuses `blocked` (the agent needs the user) and `not_feasible` (it cannot be
-- done), which its dashboard sets and shows. SQLite cannot change a CHECK: the table is rebuilt.
CREATE TABLE missions_v2 (
    id                  TEXT PRIMARY KEY NOT NULL,
    owner               TEXT NOT NULL,
    title               TEXT,
    status              TEXT NOT NULL CHECK (status IN ('pending', 'active', 'completed', 'failed', 'interrupted', 'blocked', 'not_feasible')),
    workspace_id        TEXT NOT NULL,
    agent               TEXT,
    model_override      TEXT,
    model_effort        TEXT,
    opencode_session_id TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
INSERT INTO missions_v2 (id, owner, title, status, workspace_id, agent, model_override, model_effort,
                         opencode_session_id, created_at, updated_at)
    SELECT id, owner, title, status, workspace_id, agent, model_override, model_effort,
           opencode_session_id, created_at, updated_at FROM missions;
DROP TABLE missions;
ALTER TABLE missions_v2 RENAME TO missions;
