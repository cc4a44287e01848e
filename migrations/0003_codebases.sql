-- A host directory bind-mounted at /code in a workspace container (a codebase's code).
ALTER TABLE workspaces ADD COLUMN code_mount TEXT;

-- Agent workers on other machines; they authenticate with a token issued at registration (hash only).
CREATE TABLE workers (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    hostname      TEXT,
    capabilities  TEXT NOT NULL DEFAULT '[]',
    codebases     TEXT NOT NULL DEFAULT '[]',
    token_hash    TEXT NOT NULL UNIQUE,
    registered_at TEXT NOT NULL,
    last_seen     TEXT NOT NULL
);

-- Codebases: a directory agents work on, in a berth workspace (worker_id NULL) or on a worker's machine.
CREATE TABLE codebases (
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL,
    path             TEXT NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    agent_config     TEXT NOT NULL DEFAULT '{}',
    worker_id        TEXT,
    workspace_id     TEXT,
    -- The mission that carries the codebase's current agent session.
    mission_id       TEXT,
    created_at       TEXT NOT NULL,
    last_activity    TEXT,
    UNIQUE (path, worker_id)
);
CREATE UNIQUE INDEX codebases_local_path ON codebases (path) WHERE worker_id IS NULL;

-- Tasks: queued agent work. `worker_id` is who holds a running task ('berth' for berth itself) until
-- `lease_expires_at`; a lapsed lease puts the task back (or fails it after `max_attempts`).
CREATE TABLE tasks (
    id               TEXT PRIMARY KEY NOT NULL,
    codebase_id      TEXT NOT NULL,
    title            TEXT NOT NULL,
    prompt           TEXT NOT NULL,
    agent_type       TEXT NOT NULL,
    model            TEXT,
    priority         INTEGER NOT NULL DEFAULT 0,
    metadata         TEXT NOT NULL DEFAULT '{}',
    status           TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    worker_id        TEXT,
    lease_expires_at TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    session_id       TEXT,
    mission_id       TEXT,
    result           TEXT,
    error            TEXT,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    completed_at     TEXT
);
CREATE INDEX tasks_queue ON tasks (status, priority DESC, created_at);

-- Streamed task output, kept (not only in memory).
CREATE TABLE task_output (
    task_id    TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    worker_id  TEXT,
    output     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
);

-- Sessions a worker reported for a codebase (`sessions/sync`).
CREATE TABLE synced_sessions (
    codebase_id TEXT NOT NULL,
    id          TEXT NOT NULL,
    worker_id   TEXT,
    data        TEXT NOT NULL,
    synced_at   TEXT NOT NULL,
    PRIMARY KEY (codebase_id, id)
);

-- The monitor's activity log.
CREATE TABLE monitor_messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp     TEXT NOT NULL,
    type          TEXT NOT NULL CHECK (type IN ('agent', 'human', 'system', 'tool', 'error')),
    agent_name    TEXT NOT NULL,
    content       TEXT NOT NULL,
    metadata      TEXT NOT NULL DEFAULT '{}',
    response_time REAL,
    tokens        INTEGER,
    error         TEXT
);
