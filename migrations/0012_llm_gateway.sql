-- The LLM gateway: each workspace's token (looked up by its hash; sealed so berth can write it into the
-- workspace's agent configuration), and the tokens the providers counted, per workspace and user.
CREATE TABLE gateway_tokens (
    workspace_id TEXT PRIMARY KEY NOT NULL,
    owner        TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    sealed       TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE TABLE llm_usage (
    workspace_id  TEXT PRIMARY KEY NOT NULL,
    owner         TEXT NOT NULL,
    requests      INTEGER NOT NULL DEFAULT 0,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0
);
