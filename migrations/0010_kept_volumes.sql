-- Volumes a workspace delete kept on purpose (`keep_volume`): the reconcile collects this instance's
-- volumes that no workspace owns, except these.
CREATE TABLE kept_volumes (
    name         TEXT PRIMARY KEY NOT NULL,
    workspace_id TEXT NOT NULL,
    owner        TEXT NOT NULL,
    kept_at      TEXT NOT NULL
);
