-- What berth last knew of a workspace's container: running, stopped (by its owner), exited (on its own or
-- behind berth's back) or removed. NULL: no container yet, or a host workspace.
ALTER TABLE workspaces ADD COLUMN container_state TEXT;
UPDATE workspaces SET container_state = 'running' WHERE status = 'ready' AND container_id IS NOT NULL;
-- What a `building` workspace is doing (build or rerun_init), so a restart that cuts it off says which.
ALTER TABLE workspaces ADD COLUMN building_op TEXT;
