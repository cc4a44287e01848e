-- Workspaces: one row per workspace; container workspaces also own an image, a container and a volume in
-- the engine, all named and labelled after the id.
CREATE TABLE workspaces (
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL UNIQUE,
    workspace_type   TEXT NOT NULL CHECK (workspace_type IN ('host', 'container')),
    path             TEXT NOT NULL,
    template         TEXT,
    distro           TEXT,
    packages         TEXT NOT NULL DEFAULT '[]',
    skills           TEXT NOT NULL DEFAULT '[]',
    tools            TEXT NOT NULL DEFAULT '[]',
    -- JSON object of name -> value sealed with the data dir's secret key; never plaintext.
    env_vars         TEXT NOT NULL DEFAULT '{}',
    init_scripts     TEXT NOT NULL DEFAULT '[]',
    init_script      TEXT,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'building', 'ready', 'error')),
    error_message    TEXT,
    container_id     TEXT,
    image_id         TEXT,
    init_exit_code   INTEGER,
    init_finished_at TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
