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

pub async fn handle(req: Request<Incoming>) -> Reply {
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
