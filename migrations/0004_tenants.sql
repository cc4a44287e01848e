-- Tenants: workspaces, codebases, workers and tasks belong to a user (rows from before belong to the
-- single-password mode's `admin`); API tokens; logins voided by logout.

-- Workspace names are unique per owner, not across users: the table is rebuilt with the new key.
CREATE TABLE workspaces_owned (
    id               TEXT PRIMARY KEY NOT NULL,
    owner            TEXT NOT NULL,
    name             TEXT NOT NULL,
    workspace_type   TEXT NOT NULL CHECK (workspace_type IN ('host', 'container')),
    path             TEXT NOT NULL,
    template         TEXT,
    distro           TEXT,
    packages         TEXT NOT NULL DEFAULT '[]',
    skills           TEXT NOT NULL DEFAULT '[]',
    tools            TEXT NOT NULL DEFAULT '[]',
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
    updated_at       TEXT NOT NULL,
    network          TEXT NOT NULL DEFAULT 'bridge',
    code_mount       TEXT,
    -- Per-workspace limits; NULL means the server's default.
    memory_mb        INTEGER,
    cpus             REAL,
    pids_limit       INTEGER,
    -- Set when a change (distro, network, limits) takes effect only at the next build.
    needs_rebuild    INTEGER NOT NULL DEFAULT 0,
    UNIQUE (owner, name)
);
INSERT INTO workspaces_owned (id, owner, name, workspace_type, path, template, distro, packages, skills,
    tools, env_vars, init_scripts, init_script, status, error_message, container_id, image_id,
    init_exit_code, init_finished_at, created_at, updated_at, network, code_mount)
SELECT id, 'admin', name, workspace_type, path, template, distro, packages, skills, tools, env_vars,
    init_scripts, init_script, status, error_message, container_id, image_id, init_exit_code,
    init_finished_at, created_at, updated_at, network, code_mount
FROM workspaces;
DROP TABLE workspaces;
ALTER TABLE workspaces_owned RENAME TO workspaces;
CREATE INDEX workspaces_owner ON workspaces (owner, created_at);

ALTER TABLE codebases ADD COLUMN owner TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE workers ADD COLUMN owner TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE tasks ADD COLUMN owner TEXT NOT NULL DEFAULT 'admin';
CREATE INDEX tasks_owner ON tasks (owner, created_at);

-- Long-lived API tokens: shown once, stored as a SHA-256 hash.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY NOT NULL,
    owner        TEXT NOT NULL,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    -- The owner's password version at creation: a reset password, or a removed user (even one added
    -- again under the same name), voids the token.
    user_version TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT
);
CREATE INDEX api_tokens_owner ON api_tokens (owner, created_at);

-- Login tokens voided by `POST /api/auth/logout`, kept until they would have expired anyway.
CREATE TABLE revoked_logins (
    jti        TEXT PRIMARY KEY NOT NULL,
    expires_at TEXT NOT NULL
);

-- The monitor's entries say whose work they are about (NULL: berth's own, shown to admins).
ALTER TABLE monitor_messages ADD COLUMN owner TEXT;
