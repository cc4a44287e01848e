-- A workspace's own disk limit (MiB) for /workspace and its container's files; NULL: the server's default.
ALTER TABLE workspaces ADD COLUMN disk_mb INTEGER;
