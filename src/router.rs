//! The route table: public routes, then everything else behind the token middleware.

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::{any, delete, get, post, put, MethodRouter};
use axum::{middleware, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::api::{
    audit, auth, backends, control, cors, e2b, files, gateway, library, library_openagent, mcp,
    metrics, missions, observe, openapi, opencode_proxy, preview, processes, providers, system,
    terminal, tokens, v1, workspace_power, workspaces,
};
use crate::app::AppState;
use crate::error::ApiError;

/// Bodies carry init scripts (up to 1 MiB) and env vars; nothing legitimate is bigger.
pub const BODY_LIMIT: usize = 4 << 20;
/// How much of a body over its limit is read (and dropped) before the 413: a client still sending when
/// the answer comes back would otherwise see a broken pipe instead of it.
pub const DRAIN_BEFORE_REFUSING: usize = 16 << 20;

/// A route table that remembers its paths, so `berth routes` (and the ownership test that walks
/// every route taking an object id) sees exactly what the router serves.
struct Table {
    router: Router<AppState>,
    paths: Vec<String>,
}

impl Table {
    fn new() -> Self {
        Self {
            router: Router::new(),
            paths: Vec::new(),
        }
    }

    fn route(mut self, path: &str, handler: MethodRouter<AppState>) -> Self {
        self.paths.push(path.to_string());
        self.router = self.router.route(path, handler);
        self
    }
}

/// Every path the API serves (axum's `{param}` syntax), public ones included.
pub fn paths() -> Vec<String> {
    let mut all: Vec<String> = PUBLIC
        .iter()
        .chain(&SELF_CHECKED)
        .map(|p| p.to_string())
        .collect();
    all.extend(protected_routes().paths);
    all.extend(v1_routes().paths);
    all.extend(e2b_routes().paths);
    all
}

/// Routes that need no token. The API's own description is public: it tells how to get a token.
pub const PUBLIC: [&str; 6] = [
    "/api/health",
    "/health",
    "/api/auth/login",
    "/openapi.json",
    "/docs",
    // Answers nothing but that there is nothing: keys stay on the server.
    "/v1/opencode/api-keys/sync",
];

/// Outside the token layers, checking a token themselves: `/metrics` takes an admin's or the
/// scraper's; `/mcp/v1/rpc` any token of a user's (worker tokens too).
/// `/llm/...` a workspace's gateway token.
pub const SELF_CHECKED: [&str; 3] = ["/metrics", "/mcp/v1/rpc", "/llm/{provider}/{*path}"];

/// What the gateway's listeners on workspace networks serve: the gateway alone.
pub fn gateway_only(state: AppState) -> Router {
    Router::new()
        .route(
            SELF_CHECKED[2],
            get(gateway::call_provider).post(gateway::call_provider),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// E2B's control API and sandbox traffic (`src/api/e2b.rs`); they check their own credentials (an API key,
/// a sandbox's access token).
fn e2b_routes() -> Table {
    Table::new()
        .route(
            "/e2b/sandboxes",
            post(e2b::create_sandbox).get(e2b::list_sandboxes),
        )
        .route(
            "/e2b/v2/sandboxes",
            post(e2b::create_sandbox_v2).get(e2b::list_sandboxes_v2),
        )
        .route(
            "/e2b/sandboxes/{id}",
            get(e2b::get_sandbox).delete(e2b::kill_sandbox),
        )
        .route("/e2b/sandboxes/{id}/timeout", post(e2b::set_timeout))
        .route("/e2b/sandboxes/{id}/refreshes", post(e2b::refresh))
        .route("/e2b/sandboxes/{id}/pause", post(e2b::pause))
        .route("/e2b/sandboxes/{id}/resume", post(e2b::resume))
        .route("/e2b/sandboxes/{id}/connect", post(e2b::connect))
        .route("/e2b/v2/sandboxes/{id}/connect", post(e2b::connect_v2))
        .route("/e2b/sandboxes/{id}/metrics", get(e2b::metrics))
        .route("/e2b/sandboxes/{id}/snapshots", post(e2b::create_snapshot))
        .route("/e2b/sandboxes/{id}/fork", post(e2b::fork_sandbox))
        .route("/e2b/snapshots", get(e2b::list_snapshots))
        .route("/e2b/templates", get(e2b::list_templates))
        .route("/e2b/templates/{id}", delete(e2b::delete_template))
        .route("/e2b/", any(e2b::sandbox_traffic_root))
        .route("/e2b/{*path}", any(e2b::sandbox_traffic))
}

pub fn build(state: AppState) -> Router {
    let domain = state.workspaces.config().e2b_domain.clone();
    let app = routes(state);
    match domain {
        // Before routing: a sandbox's host name turns the request into its sandbox traffic.
        Some(domain) => Router::new()
            .fallback_service(app)
            .layer(middleware::from_fn(move |req, next| {
                e2b::route_by_host(domain.clone(), req, next)
            })),
        None => app,
    }
}

fn routes(state: AppState) -> Router {
    let protected = protected_routes()
        .router
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));

    let v1_routes = v1_routes()
        .router
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            v1::require_caller,
        ));

    Router::new()
        .route(PUBLIC[0], get(system::health))
        .route(PUBLIC[1], get(v1::get_health))
        .merge(v1_routes)
        .route(PUBLIC[2], post(auth::login))
        .route(PUBLIC[3], get(openapi::openapi_json))
        .route(PUBLIC[4], get(openapi::docs_page))
        .route(PUBLIC[5], get(v1::sync_api_keys))
        .route(SELF_CHECKED[0], get(metrics::get_metrics))
        .route(SELF_CHECKED[1], post(mcp::rpc))
        .route(
            SELF_CHECKED[2],
            get(gateway::call_provider).post(gateway::call_provider),
        )
        .merge(e2b_routes().router)
        .merge(protected)
        .route_layer(middleware::from_fn(observe::tag_route))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(refuse_oversized))
        .layer(CatchPanicLayer::custom(panic_response))
        // Outside the panic catcher, so even a panic's 500 has the seed's `{"detail"}` under /v1.
        .layer(middleware::from_fn(v1::detail_errors))
        .layer(TraceLayer::new_for_http())
        .layer(middleware::from_fn(observe::observe))
        // Outermost: a preflight is answered before routing (which serves no OPTIONS).
        .layer(middleware::from_fn_with_state(state.clone(), cors::cors))
        .with_state(state)
}

/// `/api` routes behind a user's token.
fn protected_routes() -> Table {
    Table::new()
        .route("/api/auth/verify", get(auth::verify))
        .route("/api/auth/logout", post(auth::logout))
        .route(
            "/api/auth/tokens",
            get(tokens::list_tokens).post(tokens::create_token),
        )
        .route("/api/auth/tokens/{id}", delete(tokens::delete_token))
        .route("/api/audit", get(audit::list_audit))
        .route("/api/stats", get(system::stats))
        .route(
            "/api/workspaces",
            get(workspaces::list_workspaces).post(workspaces::create_workspace),
        )
        .route(
            "/api/workspaces/{id}",
            get(workspaces::get_workspace)
                .put(workspaces::update_workspace)
                .delete(workspaces::delete_workspace),
        )
        .route(
            "/api/workspaces/{id}/build",
            post(workspaces::build_workspace),
        )
        .route(
            "/api/workspaces/{id}/exec",
            post(workspaces::exec_in_workspace),
        )
        .route(
            "/api/workspaces/{id}/init-log",
            get(workspaces::get_init_log),
        )
        .route(
            "/api/workspaces/{id}/rerun-init",
            post(workspaces::rerun_init),
        )
        .route(
            "/api/workspaces/{id}/processes",
            post(processes::start_process).get(processes::list_processes),
        )
        .route(
            "/api/workspaces/{id}/processes/{pid}/output",
            get(processes::process_output),
        )
        .route(
            "/api/workspaces/{id}/processes/{pid}/stdin",
            post(processes::process_stdin),
        )
        .route(
            "/api/workspaces/{id}/processes/{pid}/signal",
            post(processes::process_signal),
        )
        .route(
            "/api/workspaces/{id}/processes/{pid}/resize",
            post(processes::process_resize),
        )
        .route(
            "/api/workspaces/{id}/files",
            get(files::read_file)
                .put(files::write_file)
                .delete(files::delete_file),
        )
        .route("/api/workspaces/{id}/pty", get(terminal::open_terminal))
        .route("/api/workspaces/{id}/files/list", get(files::list_files))
        .route("/api/workspaces/{id}/files/mkdir", post(files::make_dir))
        .route("/api/workspaces/{id}/files/move", post(files::move_file))
        .route("/api/workspaces/{id}/files/watch", get(files::watch_files))
        .route(
            "/api/workspaces/{id}/stop",
            post(workspace_power::stop_workspace),
        )
        .route(
            "/api/workspaces/{id}/start",
            post(workspace_power::start_workspace),
        )
        .route(
            "/api/workspaces/{id}/preview",
            post(preview::create_preview),
        )
        .route(
            "/api/workspaces/{id}/debug",
            get(workspaces::debug_workspace),
        )
        .route(
            "/api/workspaces/{id}/sync",
            post(workspaces::sync_workspace),
        )
        .route(
            "/api/control/missions",
            get(missions::list_missions).post(missions::create_mission),
        )
        .route(
            "/api/control/missions/{id}",
            get(missions::get_mission).delete(missions::delete_mission),
        )
        .route(
            "/api/control/missions/{id}/load",
            post(missions::load_mission),
        )
        .route(
            "/api/control/missions/{id}/cancel",
            post(missions::cancel_mission),
        )
        .route(
            "/api/control/missions/{id}/status",
            post(missions::set_mission_status),
        )
        .route(
            "/api/control/missions/{id}/resume",
            post(missions::resume_mission),
        )
        .route(
            "/api/control/missions/{id}/events",
            get(missions::list_mission_events),
        )
        .route("/api/control/message", post(missions::send_message))
        .route("/api/control/cancel", post(missions::cancel_current))
        .route("/api/control/stream", get(missions::stream_mission_events))
        .route("/api/control/tree", get(missions::mission_tree))
        .route(
            "/api/control/missions/current",
            get(control::current_mission),
        )
        .route("/api/control/running", get(control::running))
        .route(
            "/api/control/queue",
            get(control::queue).delete(control::clear_queue),
        )
        .route("/api/control/queue/{id}", delete(control::drop_queued))
        .route("/api/control/progress", get(control::progress))
        .route("/api/backends", get(backends::list_backends))
        .route("/api/backends/{id}/config", get(backends::backend_config))
        .route("/api/backends/{id}/agents", get(backends::backend_agents))
        .route("/api/providers", get(providers::list_providers))
        .route(
            "/api/providers/{id}/auth",
            post(providers::set_provider_auth).delete(providers::delete_provider_auth),
        )
        .route(
            "/api/workspaces/{id}/opencode/{*path}",
            any(opencode_proxy::proxy_to_opencode),
        )
        .route("/api/library/status", get(library::library_status))
        .route("/api/library/sync", post(library::sync_library))
        .route("/api/library/{type}", get(library::list_items))
        .route(
            "/api/library/{type}/{name}",
            get(library::get_item)
                .put(library::save_item)
                .delete(library::delete_item),
        )
        .route(
            "/api/library/mcps",
            get(library_openagent::get_mcps).put(library_openagent::put_mcps),
        )
        .route("/api/library/plugins", get(library_openagent::get_plugins))
        .route(
            "/api/library/config-profile",
            get(library_openagent::get_config_profiles),
        )
        .route(
            "/api/library/builtin-commands",
            get(library_openagent::get_builtin_commands),
        )
        .route("/api/library/commit", post(library_openagent::commit))
        .route(
            "/api/library/sandboxed-sh/config",
            get(library_openagent::harness_config),
        )
        .route(
            "/api/library/sandboxed-sh/agents",
            get(library_openagent::harness_agents),
        )
        .route("/api/library/push", post(library_openagent::push))
        .route(
            "/api/library/skills/{name}/references/{*path}",
            get(library_openagent::get_reference)
                .put(library_openagent::put_reference)
                .delete(library_openagent::delete_reference),
        )
        .route(
            "/api/library/skill/{name}/files/{*path}",
            get(library::get_skill_file)
                .put(library::save_skill_file)
                .delete(library::delete_skill_file),
        )
}

/// The seed's CodeTether API: `/v1/opencode` (codebases, agent runs, tasks, workers, runtime) and
/// `/v1/monitor`.
fn v1_routes() -> Table {
    const CB: &str = "/v1/opencode/codebases/{id}";
    Table::new()
        .route("/v1/opencode/status", get(v1::get_opencode_status))
        .route("/v1/opencode/models", get(v1::list_models))
        .route(
            "/v1/opencode/codebases",
            get(v1::list_codebases).post(v1::register_codebase),
        )
        .route("/v1/opencode/codebases/list", get(v1::list_codebases))
        .route(CB, get(v1::get_codebase).delete(v1::delete_codebase))
        .route(&format!("{CB}/trigger"), post(v1::trigger_agent))
        .route(&format!("{CB}/message"), post(v1::message_agent))
        .route(&format!("{CB}/interrupt"), post(v1::interrupt_agent))
        .route(&format!("{CB}/stop"), post(v1::stop_agent))
        .route(&format!("{CB}/status"), get(v1::get_agent_status))
        .route(&format!("{CB}/sessions"), get(v1::list_sessions))
        .route(&format!("{CB}/sessions/sync"), post(v1::sync_sessions))
        .route(
            &format!("{CB}/sessions/{{sid}}/messages/sync"),
            post(v1::sync_session_messages),
        )
        .route(&format!("{CB}/messages"), get(v1::list_session_messages))
        .route(&format!("{CB}/events"), get(v1::stream_codebase_events))
        .route(
            &format!("{CB}/tasks"),
            get(v1::list_codebase_tasks).post(v1::create_task),
        )
        .route("/v1/opencode/tasks", get(v1::list_tasks))
        .route("/v1/opencode/tasks/{id}", get(v1::get_task))
        .route(
            "/v1/opencode/tasks/{id}/status",
            put(v1::update_task_status),
        )
        .route(
            "/v1/opencode/tasks/{id}/output",
            get(v1::get_task_output).post(v1::append_task_output),
        )
        .route("/v1/opencode/tasks/{id}/cancel", post(v1::cancel_task))
        .route("/v1/opencode/workers", get(v1::list_workers))
        .route("/v1/opencode/workers/register", post(v1::register_worker))
        .route(
            "/v1/opencode/workers/{id}/unregister",
            post(v1::unregister_worker),
        )
        .route(
            "/v1/opencode/workers/{id}/heartbeat",
            post(v1::heartbeat_worker),
        )
        .route("/v1/opencode/workers/{id}/claim", post(v1::claim_task))
        .route("/v1/worker/tasks/stream", get(v1::task_channel))
        .route("/v1/worker/tasks/claim", post(v1::claim_by_id))
        .route("/v1/worker/tasks/release", post(v1::release_task))
        .route("/v1/worker/codebases", put(v1::put_worker_codebases))
        .route("/v1/opencode/runtime/status", get(v1::get_runtime_status))
        .route(
            "/v1/opencode/runtime/projects",
            get(v1::list_runtime_projects),
        )
        .route(
            "/v1/opencode/runtime/sessions",
            get(v1::list_runtime_sessions),
        )
        .route(
            "/v1/opencode/runtime/sessions/{id}",
            get(v1::get_runtime_session),
        )
        .route(
            "/v1/opencode/runtime/sessions/{id}/messages",
            get(v1::list_runtime_messages),
        )
        .route(
            "/v1/opencode/runtime/sessions/{id}/parts",
            get(v1::list_runtime_parts),
        )
        .route("/v1/monitor/agents", get(v1::list_monitor_agents))
        .route("/v1/monitor/messages", get(v1::list_monitor_messages))
        .route("/v1/monitor/stats", get(v1::get_monitor_stats))
        .route("/v1/monitor/workers", get(v1::list_workers))
}

/// Refuses a body whose declared length is over the limit before reading any of it; bodies without a
/// length are cut off at the limit by `DefaultBodyLimit` instead. File uploads have their own limit
/// (`BERTH_MAX_FILE_MB`, applied by their handler).
async fn refuse_oversized(req: Request, next: Next) -> axum::response::Response {
    if req.method() == axum::http::Method::PUT && is_file_upload(req.uri().path()) {
        return next.run(req).await;
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT) {
        return ApiError::PayloadTooLarge(format!("request body over {} MiB", BODY_LIMIT >> 20))
            .into_response();
    }
    next.run(req).await
}

/// `/api/workspaces/{id}/files`.
fn is_file_upload(path: &str) -> bool {
    path.strip_prefix("/api/workspaces/")
        .and_then(|rest| rest.strip_suffix("/files"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(
            serde_json::json!({ "error": "method not allowed", "code": "method_not_allowed" }),
        ),
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    ApiError::Internal(anyhow::anyhow!("a handler panicked")).into_response()
}
