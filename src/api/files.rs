//! `/api/workspaces/{id}/files`: a workspace's files through its resident agent — contents streamed both
//! ways (up to `BERTH_MAX_FILE_MB`), listings, directories, moves and a watch as SSE. Paths are the
//! container's (relative ones under `/workspace`) and resolve inside it, symlinks included.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use envd::filesystem::{self as pb, SERVICE};
use futures::{Stream, StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Json, Path, Query};
use crate::audit::{Audit, Entry};
use crate::error::{ApiError, ApiResult};
use crate::principal::Principal;
use crate::resident::client::Body as AgentBody;
use crate::workspaces::Workspaces;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PathQuery {
    /// A path in the container; relative ones are under `/workspace`.
    pub path: String,
    /// For listings: how many levels down (default 1).
    pub depth: Option<u32>,
    /// For watches: subdirectories too.
    #[serde(default)]
    pub recursive: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileEntry {
    pub name: String,
    pub path: String,
    /// `file`, `dir` or `symlink`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub size: i64,
    /// Permission bits, e.g. 420 (0644).
    pub mode: u32,
    pub permissions: String,
    pub owner: String,
    pub group: String,
    /// RFC 3339.
    pub mtime: Option<String>,
    pub symlink_target: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileList {
    pub entries: Vec<FileEntry>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MkdirInput {
    pub path: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MoveInput {
    pub from: String,
    pub to: String,
}

fn kind(t: i32) -> &'static str {
    match pb::FileType::try_from(t) {
        Ok(pb::FileType::Directory) => "dir",
        Ok(pb::FileType::Symlink) => "symlink",
        _ => "file",
    }
}

impl From<pb::EntryInfo> for FileEntry {
    fn from(e: pb::EntryInfo) -> Self {
        Self {
            kind: kind(e.r#type),
            name: e.name,
            path: e.path,
            size: e.size,
            mode: e.mode,
            permissions: e.permissions,
            owner: e.owner,
            group: e.group,
            mtime: e.modified_time.and_then(|t| {
                chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                    .map(|d| d.to_rfc3339())
            }),
            symlink_target: e.symlink_target,
        }
    }
}

fn check_path(path: &str) -> ApiResult<()> {
    if path.contains('\0') {
        return Err(ApiError::invalid("path must not contain NUL bytes"));
    }
    Ok(())
}

/// `path=<path>`, encoded as a query.
fn path_query(path: &str) -> String {
    serde_urlencoded::to_string([("path", path)]).unwrap_or_default()
}

/// An agent's plain-HTTP error answer as berth's.
async fn agent_http_error(resp: hyper::Response<hyper::body::Incoming>) -> ApiError {
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    match status {
        400 => ApiError::invalid(message),
        403 => ApiError::Forbidden(message),
        404 => ApiError::not_found(message),
        413 => ApiError::PayloadTooLarge(message),
        507 => ApiError::Internal(
            anyhow::Error::new(std::io::Error::from_raw_os_error(
                28, // ENOSPC: reported as 507 insufficient_storage
            ))
            .context(message),
        ),
        _ => ApiError::Engine(format!(
            "the workspace's agent answered {status}: {message}"
        )),
    }
}

#[utoipa::path(
    get, path = "/api/workspaces/{id}/files", tag = "files",
    summary = "A file's contents, streamed",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own"), PathQuery),
    responses(
        (status = 200, description = "the bytes", content_type = "application/octet-stream"),
        (status = 400, description = "a directory"),
        (status = 404, description = "no such workspace or file"),
        (status = 409, description = "not ready, or no resident agent"),
        (status = 503, description = "`agent_unavailable`"),
    ),
)]
pub async fn read_file(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> ApiResult<Response> {
    check_path(&q.path)?;
    let (_, agent) = ws.agent(&who, &id).await?;
    let req = hyper::Request::get(format!("/berth/files?{}", path_query(&q.path)))
        .header("host", "agent")
        .body(crate::resident::client::full(bytes::Bytes::new()))
        .expect("a request");
    let resp = agent.send(req).await?;
    if !resp.status().is_success() {
        return Err(agent_http_error(resp).await);
    }
    let mut out = Response::builder().status(StatusCode::OK);
    for h in [
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        header::CONTENT_DISPOSITION,
    ] {
        if let Some(v) = resp.headers().get(&h) {
            out = out.header(&h, v.clone());
        }
    }
    let stream = resp.into_body().into_data_stream();
    Ok(out.body(Body::from_stream(stream)).expect("a response"))
}

#[utoipa::path(
    put, path = "/api/workspaces/{id}/files", tag = "files",
    summary = "Write a file from the raw request body (streamed; parents made; replaced whole when complete)",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own"), PathQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "written: `{path, name, size}`"),
        (status = 400, description = "the path is a directory"),
        (status = 404, description = "no workspace the caller may act on"),
        (status = 409, description = "not ready, or no resident agent"),
        (status = 413, description = "over `BERTH_MAX_FILE_MB`"),
        (status = 503, description = "`agent_unavailable`"),
        (status = 507, description = "the workspace's disk is full"),
    ),
)]
pub async fn write_file(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
    request: Request,
) -> ApiResult<Response> {
    check_path(&q.path)?;
    let max = ws.config().max_file_mb * 1024 * 1024;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        // Read (and drop) a bounded part of the body first: a client still sending when the answer
        // comes back would otherwise see a broken pipe instead of the 413.
        let mut body = request.into_body().into_data_stream();
        let mut drained = 0usize;
        while drained < crate::router::DRAIN_BEFORE_REFUSING {
            match body.next().await {
                Some(Ok(chunk)) => drained += chunk.len(),
                _ => break,
            }
        }
        return Err(too_large(max));
    }
    let (w, agent) = ws.agent(&who, &id).await?;
    // The agent stages the upload beside its target; it is moved into place only when the client's
    // body ended cleanly, within the limit, and the agent got every byte berth counted. A body cut off
    // or over the limit (undeclared lengths included) leaves the target untouched.
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (count, fail) = (counted.clone(), failed.clone());
    let body = TryStreamExt::map_err(
        request.into_body().into_data_stream(),
        std::io::Error::other,
    )
    .and_then(move |chunk| {
        let seen = count.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed)
            + chunk.len() as u64;
        futures::future::ready(if seen > max {
            Err(std::io::Error::other("over the file size limit"))
        } else {
            Ok(hyper::body::Frame::data(chunk))
        })
    })
    .inspect_err(move |_| fail.store(true, std::sync::atomic::Ordering::Relaxed));
    let body: AgentBody = BodyExt::boxed_unsync(http_body_util::StreamBody::new(body));
    let req = hyper::Request::put(format!("/berth/files?{}&staged=1", path_query(&q.path)))
        .header("host", "agent")
        .body(body)
        .expect("a request");
    let sent = agent.send(req).await;
    let staged = match sent {
        Ok(resp) if resp.status().is_success() => {
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ApiError::Engine(format!("the workspace's agent: {e}")))?
                .to_bytes();
            serde_json::from_slice::<serde_json::Value>(&bytes).ok()
        }
        Ok(resp) if !failed.load(std::sync::atomic::Ordering::Relaxed) => {
            return Err(agent_http_error(resp).await)
        }
        Ok(_) => None,
        Err(e) if !failed.load(std::sync::atomic::Ordering::Relaxed) => return Err(e.into()),
        Err(_) => None,
    };
    let total = counted.load(std::sync::atomic::Ordering::Relaxed);
    let whole = !failed.load(std::sync::atomic::Ordering::Relaxed);
    let Some(staged) = staged else {
        return Err(if total > max {
            too_large(max)
        } else {
            ApiError::invalid("the upload was cut off; nothing was written")
        });
    };
    let staged_path = staged["staged"].as_str().unwrap_or_default().to_string();
    if !whole || staged["size"].as_u64() != Some(total) {
        let _: ApiResult<pb::RemoveResponse> = agent
            .unary(SERVICE, "Remove", &pb::PathRequest { path: staged_path })
            .await
            .map_err(ApiError::from);
        return Err(if total > max {
            too_large(max)
        } else {
            ApiError::invalid("the upload was cut off; nothing was written")
        });
    }
    let moved: pb::EntryResponse = agent
        .unary(
            SERVICE,
            "Move",
            &pb::MoveRequest {
                source: staged_path,
                destination: q.path.clone(),
            },
        )
        .await?;
    let entry = moved.entry.unwrap_or_default();
    audit
        .record(
            Entry::ok(&who.name, "workspace.file.write", Some(&w.id))
                .detail(serde_json::json!({ "path": q.path })),
        )
        .await;
    Ok(
        Json(serde_json::json!({ "path": entry.path, "name": entry.name, "size": entry.size }))
            .into_response(),
    )
}

fn too_large(max: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the file is over the {} MiB limit (BERTH_MAX_FILE_MB)",
        max / 1024 / 1024
    ))
}

#[utoipa::path(
    delete, path = "/api/workspaces/{id}/files", tag = "files",
    summary = "Remove a file, or a directory with everything in it",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own"), PathQuery),
    responses(
        (status = 204, description = "removed"),
        (status = 404, description = "no such workspace or path"),
        (status = 409, description = "not ready, or no resident agent"),
        (status = 503, description = "`agent_unavailable`"),
    ),
)]
pub async fn delete_file(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> ApiResult<StatusCode> {
    check_path(&q.path)?;
    let (w, agent) = ws.agent(&who, &id).await?;
    let _: pb::RemoveResponse = agent
        .unary(
            SERVICE,
            "Remove",
            &pb::PathRequest {
                path: q.path.clone(),
            },
        )
        .await?;
    audit
        .record(
            Entry::ok(&who.name, "workspace.file.delete", Some(&w.id))
                .detail(serde_json::json!({ "path": q.path })),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/api/workspaces/{id}/files/list", tag = "files",
    summary = "A directory's entries (name, type, size, mode, mtime), `depth` levels down",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own"), PathQuery),
    responses(
        (status = 200, description = "the entries", body = FileList),
        (status = 400, description = "not a directory"),
        (status = 404, description = "no such workspace or directory"),
        (status = 409, description = "not ready, or no resident agent"),
    ),
)]
pub async fn list_files(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<FileList>> {
    check_path(&q.path)?;
    let (_, agent) = ws.agent(&who, &id).await?;
    let list: pb::ListDirResponse = agent
        .unary(
            SERVICE,
            "ListDir",
            &pb::ListDirRequest {
                path: q.path,
                depth: q.depth.unwrap_or(1),
            },
        )
        .await?;
    Ok(Json(FileList {
        entries: list.entries.into_iter().map(FileEntry::from).collect(),
    }))
}

#[utoipa::path(
    post, path = "/api/workspaces/{id}/files/mkdir", tag = "files",
    summary = "Make a directory and its parents",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own")),
    request_body = MkdirInput,
    responses(
        (status = 201, description = "made", body = FileEntry),
        (status = 404, description = "no workspace the caller may act on"),
        (status = 409, description = "it exists, or the workspace is not ready or has no resident agent"),
    ),
)]
pub async fn make_dir(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Json(input): Json<MkdirInput>,
) -> ApiResult<(StatusCode, Json<FileEntry>)> {
    check_path(&input.path)?;
    let (_, agent) = ws.agent(&who, &id).await?;
    let made: pb::EntryResponse = agent
        .unary(SERVICE, "MakeDir", &pb::PathRequest { path: input.path })
        .await?;
    let entry = made
        .entry
        .ok_or_else(|| ApiError::Engine("the workspace's agent made no entry".into()))?;
    Ok((StatusCode::CREATED, Json(entry.into())))
}

#[utoipa::path(
    post, path = "/api/workspaces/{id}/files/move", tag = "files",
    summary = "Move or rename a file or directory (parents of the target made)",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own")),
    request_body = MoveInput,
    responses(
        (status = 200, description = "moved", body = FileEntry),
        (status = 404, description = "no such workspace or source"),
        (status = 409, description = "not ready, or no resident agent"),
    ),
)]
pub async fn move_file(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Json(input): Json<MoveInput>,
) -> ApiResult<Json<FileEntry>> {
    check_path(&input.from)?;
    check_path(&input.to)?;
    let (_, agent) = ws.agent(&who, &id).await?;
    let moved: pb::EntryResponse = agent
        .unary(
            SERVICE,
            "Move",
            &pb::MoveRequest {
                source: input.from,
                destination: input.to,
            },
        )
        .await?;
    let entry = moved
        .entry
        .ok_or_else(|| ApiError::Engine("the workspace's agent moved nothing".into()))?;
    Ok(Json(entry.into()))
}

#[utoipa::path(
    get, path = "/api/workspaces/{id}/files/watch", tag = "files",
    summary = "Changes under a directory as SSE (`create`, `write`, `remove`, `rename`, `chmod`; data `{name, type}`)",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own"), PathQuery),
    responses(
        (status = 200, description = "the event stream, from the moment it opens", content_type = "text/event-stream"),
        (status = 400, description = "not a directory"),
        (status = 404, description = "no such workspace or directory"),
        (status = 409, description = "not ready, or no resident agent"),
    ),
)]
pub async fn watch_files(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> ApiResult<impl IntoResponse> {
    check_path(&q.path)?;
    let (_, agent) = ws.agent(&who, &id).await?;
    let stream = agent
        .stream::<_, pb::WatchDirResponse>(
            SERVICE,
            "WatchDir",
            &pb::WatchDirRequest {
                path: q.path,
                recursive: q.recursive,
                include_entry: false,
                allow_network_mounts: false,
            },
        )
        .await?;
    let mut stream = Box::pin(stream);
    // The first message says whether the watch is in place.
    match stream.next().await {
        Some(Ok(_)) => {}
        Some(Err(e)) => return Err(e.into()),
        None => return Err(ApiError::Engine("the watch ended at once".into())),
    }
    let events = watch_events(stream);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn watch_events(
    stream: impl Stream<Item = crate::resident::AgentResult<pb::WatchDirResponse>> + Send,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send {
    stream
        .take_while(|r| futures::future::ready(r.is_ok()))
        .filter_map(|r| {
            futures::future::ready(match r.ok().and_then(|m| m.event) {
                Some(pb::WatchEvent::Filesystem(e)) => {
                    let name = match pb::EventType::try_from(e.r#type) {
                        Ok(pb::EventType::Create) => "create",
                        Ok(pb::EventType::Write) => "write",
                        Ok(pb::EventType::Remove) => "remove",
                        Ok(pb::EventType::Rename) => "rename",
                        Ok(pb::EventType::Chmod) => "chmod",
                        _ => "change",
                    };
                    Some(Ok(SseEvent::default().event(name).data(
                        serde_json::json!({ "name": e.name, "type": name }).to_string(),
                    )))
                }
                _ => None,
            })
        })
}
