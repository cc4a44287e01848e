//! File contents over plain HTTP, streamed both ways: envd's `GET /files?path=` and berth's
//! `/berth/files?path=` (GET, PUT with the raw body, DELETE). A write goes to a temporary file beside the
//! target and is renamed over it when complete, so a cut-off upload never leaves half a file.

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::AsyncWriteExt;

use crate::fs::{entry, resolve};
use crate::rpc::{self, Reply};

/// Largest multipart upload envd's `POST /files` takes in one request (it is read whole).
const MAX_MULTIPART: usize = 512 << 20;

pub async fn handle(req: Request<Incoming>) -> Reply {
    if req.method() == Method::POST && req.uri().path() == "/files" {
        return envd_upload(req).await;
    }
    let Some(path) = rpc::query_param(&req, "path") else {
        return rpc::json_error(
            StatusCode::BAD_REQUEST,
            "the path query parameter is required",
        );
    };
    let path = resolve(&path);
    match *req.method() {
        Method::GET => download(&path).await,
        Method::PUT if req.uri().path() == "/berth/files" => {
            let staged = rpc::query_param(&req, "staged").is_some_and(|v| v == "1");
            upload(&path, req.into_body(), staged).await
        }
        Method::DELETE if req.uri().path() == "/berth/files" => {
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
                Ok(_) => std::fs::remove_file(&path),
                Err(e) => Err(e),
            }
            .map(|_| {
                Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(rpc::empty())
                    .unwrap()
            })
            .unwrap_or_else(|e| io_reply(&path, e))
        }
        _ => rpc::json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here"),
    }
}

fn io_reply(path: &std::path::Path, e: std::io::Error) -> Reply {
    let status = match e.kind() {
        std::io::ErrorKind::NotFound => StatusCode::NOT_FOUND,
        std::io::ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        _ if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) => {
            StatusCode::INSUFFICIENT_STORAGE
        }
        _ if e.raw_os_error() == Some(libc::EISDIR) || e.raw_os_error() == Some(libc::ENOTDIR) => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    rpc::json_error(status, format!("{}: {e}", path.display()))
}

async fn download(path: &std::path::Path) -> Reply {
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) => return io_reply(path, e),
    };
    let meta = match file.metadata().await {
        Ok(m) => m,
        Err(e) => return io_reply(path, e),
    };
    if meta.is_dir() {
        return rpc::json_error(
            StatusCode::BAD_REQUEST,
            format!("{} is a directory", path.display()),
        );
    }
    let stream = tokio_util_stream(file).map_ok(Frame::data);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Response::builder()
        .header("content-type", "application/octet-stream")
        .header("content-length", meta.len())
        .header(
            "content-disposition",
            format!("attachment; filename=\"{}\"", name.replace('"', "")),
        )
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap()
}

/// The file's bytes as a stream of chunks.
fn tokio_util_stream(
    mut file: tokio::fs::File,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    async_stream(move |tx| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match file.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    if tx
                        .send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    })
}

fn async_stream<F, Fut>(f: F) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Writes the body beside `path` and renames it over `path` when complete; `staged`: leaves it beside
/// (answering its name and size) for the caller to move into place once it knows the upload was whole —
/// a body cut off mid-stream can look complete from here.
async fn upload(path: &std::path::Path, mut body: Incoming, staged: bool) -> Reply {
    if let Some(parent) = path.parent() {
        if let Err(e) = tokio::fs::create_dir_all(parent).await {
            return io_reply(parent, e);
        }
    }
    if path.is_dir() {
        return rpc::json_error(
            StatusCode::BAD_REQUEST,
            format!("{} is a directory", path.display()),
        );
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.berth-upload-{}-{n}", std::process::id()));
    let mut file = match tokio::fs::File::create(&tmp).await {
        Ok(f) => f,
        Err(e) => return io_reply(path, e),
    };
    let written: Result<(), std::io::Error> = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(std::io::Error::other)?;
            if let Some(data) = frame.data_ref() {
                file.write_all(data).await?;
            }
        }
        file.flush().await?;
        file.sync_all().await?;
        Ok(())
    }
    .await;
    drop(file);
    if staged {
        return match written {
            Ok(()) => {
                let size = std::fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0);
                rpc::json_reply(
                    StatusCode::OK,
                    &serde_json::json!({ "staged": tmp.to_string_lossy(), "size": size }),
                )
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                io_reply(path, e)
            }
        };
    }
    if let Err(e) = written.and(tokio::fs::rename(&tmp, path).await) {
        let _ = tokio::fs::remove_file(&tmp).await;
        return io_reply(path, e);
    }
    match entry(path) {
        Ok(e) => rpc::json_reply(
            StatusCode::OK,
            &serde_json::json!({ "path": e.path, "name": e.name, "size": e.size }),
        ),
        Err(e) => rpc::json_error(StatusCode::INTERNAL_SERVER_ERROR, e.message),
    }
}

/// envd's `POST /files`: a raw body written to `path`, or `multipart/form-data` with one `file` part per
/// file (its filename the target path; `path` names it when there is one). Answers the files written as
/// `[{name, type, path}]`.
async fn envd_upload(req: Request<Incoming>) -> Reply {
    let query_path = rpc::query_param(&req, "path").filter(|p| !p.is_empty());
    let ctype = rpc::content_type(&req);
    if !ctype.starts_with("multipart/form-data") {
        let Some(path) = query_path else {
            return rpc::json_error(
                StatusCode::BAD_REQUEST,
                "the path query parameter is required",
            );
        };
        let path = resolve(&path);
        let reply = upload(&path, req.into_body(), false).await;
        if !reply.status().is_success() {
            return reply;
        }
        return written(&[path]);
    }
    let Some(boundary) = ctype
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_string())
    else {
        return rpc::json_error(StatusCode::BAD_REQUEST, "multipart without a boundary");
    };
    let body = match rpc::read_body(req.into_body(), MAX_MULTIPART).await {
        Ok(b) => b,
        Err(e) => return rpc::json_error(StatusCode::PAYLOAD_TOO_LARGE, e.message),
    };
    let parts = match multipart(&body, &boundary) {
        Ok(p) => p,
        Err(e) => return rpc::json_error(StatusCode::BAD_REQUEST, e),
    };
    let files: Vec<_> = parts
        .into_iter()
        .filter(|(name, ..)| name == "file")
        .collect();
    if files.is_empty() {
        return rpc::json_error(StatusCode::BAD_REQUEST, "no file part in the upload");
    }
    let single = files.len() == 1;
    let mut paths = Vec::new();
    for (_, filename, content) in files {
        let target = match (&query_path, single) {
            (Some(p), true) => p.clone(),
            _ => match filename {
                Some(f) if !f.is_empty() => f,
                _ => {
                    return rpc::json_error(
                        StatusCode::BAD_REQUEST,
                        "a file part without a filename",
                    )
                }
            },
        };
        let path = resolve(&target);
        if let Err(e) = write_whole(&path, &content).await {
            return io_reply(&path, e);
        }
        paths.push(path);
    }
    written(&paths)
}

fn written(paths: &[std::path::PathBuf]) -> Reply {
    let entries: Vec<serde_json::Value> = paths
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                "type": "file",
                "path": p.to_string_lossy(),
            })
        })
        .collect();
    rpc::json_reply(StatusCode::OK, &serde_json::Value::Array(entries))
}

/// Writes a file whole: to a temporary file beside it, renamed over it.
async fn write_whole(path: &std::path::Path, content: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.berth-upload-{}", std::process::id()));
    let result = async {
        tokio::fs::write(&tmp, content).await?;
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

/// A part of a `multipart/form-data` body: its field name, filename and content.
type Part = (String, Option<String>, Vec<u8>);

fn multipart(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let find = |hay: &[u8], needle: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    };
    let mut parts = Vec::new();
    let mut at = find(body, d, 0).ok_or("no multipart boundary in the body")? + d.len();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            return Ok(parts);
        }
        // Past the CRLF after the delimiter: the part's headers, a blank line, its content.
        at += 2;
        let head_end = find(body, b"\r\n\r\n", at).ok_or("a part without headers")?;
        let head = String::from_utf8_lossy(&body[at..head_end]).into_owned();
        let content_start = head_end + 4;
        let next = find(body, format!("\r\n{delimiter}").as_bytes(), content_start)
            .ok_or("a part without an end")?;
        let (mut name, mut filename) = (String::new(), None);
        for line in head.lines() {
            let lower = line.to_ascii_lowercase();
            if !lower.starts_with("content-disposition:") {
                continue;
            }
            for param in line.split(';').skip(1) {
                let (k, v) = param.trim().split_once('=').unwrap_or((param.trim(), ""));
                let v = v.trim().trim_matches('"').to_string();
                match k.trim() {
                    "name" => name = v,
                    "filename" => filename = Some(v),
                    _ => {}
                }
            }
        }
        parts.push((name, filename, body[content_start..next].to_vec()));
        at = next + 2 + d.len();
    }
}
