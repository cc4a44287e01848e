//! The API's own description: an OpenAPI 3.1 document generated from the handlers' `#[utoipa::path]`
//! annotations and the request and response types' `ToSchema` derives (`GET /openapi.json`), and a
//! page that renders it (`GET /docs`). Both are public: they tell a client how to get a token. The
//! page is written here and loads nothing from elsewhere, since berth runs on hosts without internet
//! access.

mod errors;
pub mod shapes;

use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};
use utoipa::openapi::{RefOr, Schema};
use utoipa::OpenApi;

use super::{
    audit, auth, backends, control, e2b, files, gateway, library, library_openagent, mcp, metrics,
    missions, opencode_proxy, preview, processes, providers, system, terminal, tokens, v1,
    workspace_power, workspaces,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "berth",
        description = "A self-hosted container workspace orchestrator: workspaces (containers per distro, \
exec, init scripts, debug), a git-backed library, agent missions on OpenCode, and the seed's agent API \
under `/v1`.

Every `/api` route except `/api/health` and `/api/auth/login` needs `Authorization: Bearer <token>`: \
a login token or an API token (`berth_…`); a worker's token is refused there (403). `/v1` routes take a \
user's token, a user's worker token (scope `worker`, naming the worker it acts as) or a worker's own \
(`bwt_…`); CodeTether's stock worker's token-less calls are taken only as a worker that vouched for itself \
(see the README). `/health`, `/openapi.json`, `/docs` and `/v1/opencode/api-keys/sync` are public; \
`/mcp/v1/rpc` takes any token of a user's.

Errors under `/api` are `{\"error\", \"code\"}` (see the `ApiError` schema for every code); under `/v1` \
and `/health` they are `{\"detail\"}`. A path berth does not serve is 404, and a served path with another \
method is 405 (`method_not_allowed`).",
    ),
    paths(
        auth::login, auth::verify, auth::logout,
        tokens::list_tokens, tokens::create_token, tokens::delete_token,
        system::health, system::stats, gateway::call_provider, audit::list_audit, metrics::get_metrics,
        workspaces::list_workspaces, workspaces::create_workspace, workspaces::get_workspace,
        workspaces::update_workspace, workspaces::delete_workspace, workspaces::build_workspace,
        workspaces::exec_in_workspace, workspaces::get_init_log, workspaces::rerun_init,
        workspace_power::stop_workspace, workspace_power::start_workspace,
        preview::create_preview,
        workspaces::debug_workspace, workspaces::sync_workspace,
        processes::start_process, processes::list_processes, processes::process_output,
        processes::process_stdin, processes::process_signal, processes::process_resize,
        terminal::open_terminal,
        files::read_file, files::write_file, files::delete_file, files::list_files, files::make_dir,
        files::move_file, files::watch_files,
        opencode_proxy::proxy_to_opencode,
        library::list_items, library::get_item, library::save_item, library::delete_item,
        library::get_skill_file, library::save_skill_file, library::delete_skill_file,
        library::library_status, library::sync_library,
        library_openagent::get_mcps, library_openagent::put_mcps, library_openagent::get_reference,
        library_openagent::put_reference, library_openagent::delete_reference,
        library_openagent::get_plugins, library_openagent::get_config_profiles,
        library_openagent::get_builtin_commands, library_openagent::commit, library_openagent::push,
        library_openagent::harness_config, library_openagent::harness_agents,
        missions::list_missions, missions::create_mission, missions::get_mission,
        missions::delete_mission, missions::load_mission, missions::cancel_mission,
        missions::set_mission_status, missions::resume_mission, missions::list_mission_events,
        missions::send_message, missions::cancel_current, missions::stream_mission_events,
        missions::mission_tree,
        control::current_mission, control::running, control::queue, control::clear_queue,
        control::drop_queued, control::progress,
        backends::list_backends, backends::backend_config, backends::backend_agents,
        providers::list_providers, providers::set_provider_auth, providers::delete_provider_auth,
        v1::get_health, v1::get_opencode_status, v1::list_models,
        v1::list_codebases, v1::register_codebase, v1::get_codebase, v1::delete_codebase,
        v1::trigger_agent, v1::message_agent, v1::interrupt_agent, v1::stop_agent,
        v1::get_agent_status, v1::list_sessions, v1::sync_sessions, v1::list_session_messages,
        v1::stream_codebase_events,
        v1::list_codebase_tasks, v1::create_task, v1::list_tasks, v1::get_task,
        v1::update_task_status, v1::get_task_output, v1::append_task_output, v1::cancel_task,
        v1::list_workers, v1::register_worker, v1::unregister_worker, v1::heartbeat_worker,
        v1::claim_task, v1::task_channel, v1::claim_by_id, v1::release_task,
        v1::put_worker_codebases, v1::sync_api_keys, v1::sync_session_messages, mcp::rpc,
        v1::get_runtime_status, v1::list_runtime_projects, v1::list_runtime_sessions,
        v1::get_runtime_session, v1::list_runtime_messages, v1::list_runtime_parts,
        v1::list_monitor_agents, v1::list_monitor_messages, v1::get_monitor_stats,
        e2b::create_sandbox, e2b::create_sandbox_v2, e2b::list_sandboxes, e2b::list_sandboxes_v2, e2b::get_sandbox,
        e2b::kill_sandbox, e2b::set_timeout, e2b::refresh, e2b::pause, e2b::resume, e2b::connect, e2b::connect_v2,
        e2b::metrics, e2b::list_templates, e2b::create_snapshot, e2b::list_snapshots,
        e2b::delete_template, e2b::fork_sandbox, e2b::sandbox_traffic_root, e2b::sandbox_traffic,
        openapi_json, docs_page,
    ),
    tags(
        (name = "auth", description = "logins, logout, token checks"),
        (name = "tokens", description = "long-lived API tokens"),
        (name = "system", description = "health and host statistics"),
        (name = "workspaces", description = "workspaces and what runs in them"),
        (name = "processes", description = "long-running processes, their live output, stdin and signals, on a workspace's resident agent"),
        (name = "files", description = "a workspace's files through its resident agent"),
        (name = "opencode", description = "pass-through to a workspace's OpenCode server"),
        (name = "library", description = "the team's git-backed library"),
        (name = "missions", description = "agent missions and the control session"),
        (name = "providers", description = "LLM providers and their keys"),
        (name = "v1 opencode", description = "the seed's agent API: status and models"),
        (name = "v1 codebases", description = "codebases and the agent runs on them"),
        (name = "v1 tasks", description = "the task queue and the holder's reports"),
        (name = "v1 workers", description = "workers: registration, heartbeats, claims"),
        (name = "v1 runtime", description = "the OpenCode servers berth runs, read-only"),
        (name = "v1 monitor", description = "berth's activity log"),
        (name = "e2b", description = "E2B's control API and sandbox traffic, for E2B's SDKs (`E2B_API_URL` and `E2B_SANDBOX_URL` = `http://HOST:PORT/e2b`); errors are E2B's `{code, message}`"),
        (name = "docs", description = "this description"),
    ),
)]
struct ApiDoc;

/// Paths served by a handler already documented under another path: the same operation under its
/// own id (`(documented path, alias, operation id, tag)`), GET only.
const ALIASES: [(&str, &str, &str, &str); 2] = [
    (
        "/v1/opencode/codebases",
        "/v1/opencode/codebases/list",
        "list_codebases_alias",
        "v1 codebases",
    ),
    (
        "/v1/opencode/workers",
        "/v1/monitor/workers",
        "list_monitor_workers",
        "v1 monitor",
    ),
];

/// The whole document: the annotations, the aliases, then what the router's layers add.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for (from, to, id, tag) in ALIASES {
        let mut op = doc
            .paths
            .paths
            .get(from)
            .and_then(|item| item.get.clone())
            .unwrap_or_else(|| panic!("alias of an undocumented GET {from}"));
        op.operation_id = Some(id.into());
        op.tags = Some(vec![tag.into()]);
        let mut item = utoipa::openapi::PathItem::default();
        item.get = Some(op);
        doc.paths.paths.insert(to.into(), item);
    }
    // One handler for several methods (the OpenCode pass-through) gives each the handler's name;
    // operation ids must be unique, so each gets its method too.
    for item in doc.paths.paths.values_mut() {
        let ops = errors::operations_mut(item);
        if ops.len() > 1
            && ops
                .iter()
                .all(|(_, op)| op.operation_id == ops[0].1.operation_id)
        {
            for (method, op) in ops {
                op.operation_id = op.operation_id.take().map(|id| format!("{id}_{method}"));
            }
        }
    }
    // `Limits` refuses unknown fields when berth reads it back, but in `WorkspaceView` it is flattened
    // (an `allOf` member), where `additionalProperties: false` would refuse every other field.
    if let Some(components) = doc.components.as_mut() {
        if let Some(RefOr::T(Schema::Object(limits))) = components.schemas.get_mut("Limits") {
            limits.additional_properties = None;
        }
    }
    errors::apply(&mut doc);
    doc
}

/// Built once: the document only changes with the binary.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    document()
        .to_json()
        .expect("the OpenAPI document serializes")
});

#[utoipa::path(
    get, path = "/openapi.json", tag = "docs",
    summary = "This API's OpenAPI 3.1 document",
    responses((status = 200, description = "the document", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}

const PAGE: &str = include_str!("docs.html");

#[utoipa::path(
    get, path = "/docs", tag = "docs",
    summary = "An interactive page over /openapi.json: every route, its parameters, bodies and errors, with \"try it\"",
    responses((status = 200, description = "the page (self-contained HTML)", content_type = "text/html", body = String)),
)]
pub async fn docs_page() -> Html<&'static str> {
    Html(PAGE)
}

#[cfg(test)]
mod tests;
