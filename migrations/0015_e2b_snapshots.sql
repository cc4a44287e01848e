-- E2B snapshots: a sandbox's container committed as an image (its /workspace kept beside it as a tar),
-- from which new sandboxes start. A workspace made from one names that image as its base instead of its
-- distro's.
CREATE TABLE e2b_snapshots (
    id          TEXT PRIMARY KEY NOT NULL,
    owner       TEXT NOT NULL,
    name        TEXT NOT NULL,
    sandbox_id  TEXT NOT NULL,
    image_id    TEXT NOT NULL,
    listed      INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL
);
CREATE INDEX e2b_snapshots_owner ON e2b_snapshots (owner);
ALTER TABLE workspaces ADD COLUMN base_image TEXT;
