-- Workers choose their own ids (CodeTether's worker does), so a worker id is unique per owner: berth
-- keys a worker as `owner:id` wherever it stores one, and the API shows the id alone. User names hold
-- no colon, so keys never collide with berth's own pseudo worker (`berth`).
UPDATE workers SET id = owner || ':' || id;
UPDATE codebases SET worker_id = owner || ':' || worker_id WHERE worker_id IS NOT NULL;
UPDATE tasks SET worker_id = owner || ':' || worker_id WHERE worker_id IS NOT NULL AND worker_id <> 'berth';
UPDATE task_output SET worker_id = (SELECT t.owner FROM tasks t WHERE t.id = task_output.task_id) || ':' || worker_id
    WHERE worker_id IS NOT NULL AND worker_id <> 'berth';
UPDATE synced_sessions SET worker_id = (SELECT c.owner FROM codebases c WHERE c.id = synced_sessions.codebase_id) || ':' || worker_id
    WHERE worker_id IS NOT NULL;

-- A worker token acts only for that user's workers, only under /v1 and /mcp.
ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'user' CHECK (scope IN ('user', 'worker'));
