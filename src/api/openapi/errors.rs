//! The error side of the document: the two error bodies (`{"error","code"}` under `/api`,
//! `{"detail"}` under `/v1` and `/health`), the token schemes, and the responses every route gets from
//! the layers it sits behind (token checks, body and query extractors, the size limit, the panic
//! catcher). Handlers' annotations list only the errors their own code returns; this pass adds what the
//! router wraps around them and gives every error response its body, so the two never disagree.

use serde_json::json;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Header, OpenApi, Ref, RefOr};

/// Every `code` an `/api` error carries, with its status and meaning; the first code listed for a
/// status is the one an error of that status has unless its description names another.
pub const CODES: [(u16, &str, &str); 17] = [
    (
        400,
        "invalid_request",
        "the request is malformed or a value is refused; the message names it",
    ),
    (
        401,
        "unauthorized",
        "no token, or one that is unknown, expired or void",
    ),
    (403, "forbidden", "authenticated, but not allowed this"),
    (
        403,
        "host_workspaces_disabled",
        "host workspaces are off on this server",
    ),
    (404, "not_found", "no such object, or another user's"),
    (
        405,
        "method_not_allowed",
        "the path is served, but not with this method",
    ),
    (
        409,
        "conflict",
        "the object's state does not allow this now",
    ),
    (
        409,
        "diverged_history",
        "the library's remote has commits the local history lacks, and the other way round",
    ),
    (
        409,
        "engine_state",
        "the workspace's container or image is gone or not running; rebuild or start it",
    ),
    (
        409,
        "remote_unreachable",
        "the library's remote cannot be reached",
    ),
    (
        409,
        "push_failed",
        "pushing the library's local commits failed",
    ),
    (413, "payload_too_large", "the body is over 4 MiB"),
    (
        429,
        "rate_limited",
        "too many failed logins; retry after `Retry-After` seconds",
    ),
    (
        500,
        "internal",
        "an unexpected failure, logged on the server",
    ),
    (
        502,
        "engine_error",
        "the Docker engine (or a workspace's OpenCode server) failed or is unreachable",
    ),
    (
        503,
        "unavailable",
        "an agent server cannot be started or reached",
    ),
    (
        507,
        "insufficient_storage",
        "berth's data dir is full: the write was refused and nothing changed",
    ),
];

/// Security scheme names, as operations name them.
pub const USER_TOKEN: &str = "user_token";
pub const WORKER_TOKEN: &str = "worker_token";

/// Which error body a path answers with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `{"error","code"}`
    Api,
    /// `{"detail"}`: the seed's API, rewritten by `v1::detail_errors`.
    Seed,
}

impl Family {
    fn of(path: &str) -> Self {
        if path.starts_with("/v1/") || path == "/health" {
            Self::Seed
        } else {
            Self::Api
        }
    }
}

/// Adds the error schemas, the token schemes, and the layers' errors and error bodies to every
/// operation.
pub fn apply(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert("ApiError".into(), api_error_schema().into());
    components
        .schemas
        .insert("Detail".into(), detail_schema().into());
    components.security_schemes.insert(
        USER_TOKEN.into(),
        bearer("A login token (`POST /api/auth/login`) or an API token (`berth_…`, `POST /api/auth/tokens`)."),
    );
    components.security_schemes.insert(
        WORKER_TOKEN.into(),
        bearer("A worker's own token (`bwt_…`, from `POST /v1/opencode/workers/register`), or a user's worker token (`POST /api/auth/tokens` with `scope: worker`, naming the worker it acts as); valid only under `/v1`, for the worker's own work."),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        let family = Family::of(path);
        let public = crate::router::PUBLIC.contains(&path.as_str());
        for (_, op) in operations_mut(item) {
            add_layer_errors(op, family, public);
            fill_error_bodies(op, family);
        }
    }
}

/// The operations of a path item with their methods, whatever they are.
pub fn operations_mut(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_mut().map(|op| (method, op)))
    .collect()
}

fn bearer(description: &str) -> SecurityScheme {
    let mut http = Http::new(HttpAuthScheme::Bearer);
    http.description = Some(description.into());
    SecurityScheme::Http(http)
}

/// What the router's layers answer, on top of what the handler itself does.
fn add_layer_errors(op: &mut Operation, family: Family, public: bool) {
    if !public {
        match family {
            Family::Api => {
                op.security = Some(vec![SecurityRequirement::new(USER_TOKEN, [""; 0])]);
                add(op, 401, "no token, or an unknown, expired or void one");
                add(op, 403, "a worker's token, which is valid only under `/v1`");
            }
            Family::Seed => {
                op.security = Some(vec![
                    SecurityRequirement::new(USER_TOKEN, [""; 0]),
                    SecurityRequirement::new(WORKER_TOKEN, [""; 0]),
                ]);
                add(op, 401, "no token, or an unknown, expired or void one");
            }
        }
    }
    if op.request_body.is_some() {
        add(op, 400, "the body is not JSON of the documented shape");
        add(op, 413, "the body is over 4 MiB");
    }
    let has_query = op
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Query);
    if has_query {
        add(op, 400, "a query parameter is malformed");
    }
    add(op, 500, "an unexpected failure, logged on the server");
}

/// Adds an error response, or adds its reason to the one the handler already documents.
fn add(op: &mut Operation, status: u16, why: &str) {
    let key = status.to_string();
    match op.responses.responses.get_mut(&key) {
        Some(RefOr::T(r)) => {
            if !r.description.contains(why) {
                r.description = format!("{}; or {why}", r.description);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            op.responses
                .responses
                .insert(key, RefOr::T(Response::new(why)));
        }
    }
}

/// Gives every error response without a body its family's body, and under `/api` names its code.
fn fill_error_bodies(op: &mut Operation, family: Family) {
    for (status, resp) in op.responses.responses.iter_mut() {
        let Ok(status) = status.parse::<u16>() else {
            continue;
        };
        let RefOr::T(resp) = resp else { continue };
        if status < 400 || !resp.content.is_empty() {
            continue;
        }
        let (schema, example) = match family {
            Family::Api => {
                let named = named_code(&resp.description);
                let code = named.or_else(|| default_code(status)).unwrap_or("internal");
                if named.is_none() {
                    resp.description = format!("`{code}`: {}", resp.description);
                }
                ("ApiError", json!({ "error": "…", "code": code }))
            }
            Family::Seed => ("Detail", json!({ "detail": "…" })),
        };
        let mut content = Content::new(Some(Ref::from_schema_name(schema)));
        content.example = Some(example);
        resp.content.insert("application/json".into(), content);
        if status == 429 {
            let mut h = Header::new(ObjectBuilder::new().schema_type(Type::Integer));
            h.description = Some("seconds to wait before the next attempt".into());
            resp.headers.insert("Retry-After".into(), h);
        }
    }
}

/// The first known code a description names in backticks (e.g. "`host_workspaces_disabled`: …").
fn named_code(description: &str) -> Option<&'static str> {
    let first = description.strip_prefix('`')?.split('`').next()?;
    CODES.iter().map(|c| c.1).find(|c| *c == first)
}

fn default_code(status: u16) -> Option<&'static str> {
    CODES.iter().find(|c| c.0 == status).map(|c| c.1)
}

fn api_error_schema() -> Schema {
    let codes: Vec<&str> = CODES.iter().map(|c| c.1).collect();
    let table: String = CODES
        .iter()
        .map(|(status, code, meaning)| format!("\n- `{code}` ({status}): {meaning}"))
        .collect();
    ObjectBuilder::new()
        .description(Some(format!(
            "An error under `/api`. Clients branch on `code`, never on the message.{table}"
        )))
        .property(
            "error",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("what went wrong, for people")),
        )
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(codes)),
        )
        .required("error")
        .required("code")
        .into()
}

fn detail_schema() -> Schema {
    ObjectBuilder::new()
        .description(Some(
            "An error under `/v1` and `/health` (the seed's shape); the status tells its kind.",
        ))
        .property(
            "detail",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("what went wrong, for people")),
        )
        .required("detail")
        .into()
}
