-- Processes the kernel killed for lack of memory in a workspace's container (the engine's own flag says
-- only whether the container itself ended that way).
ALTER TABLE workspaces ADD COLUMN oom_kills INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workspaces ADD COLUMN last_oom_at TEXT;
