//! `filesystem.Filesystem`: stat, list, make, move, remove and watch paths. The agent runs inside the
//! container, so paths and symlinks resolve in the container's view, never the host's.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use envd::connect::{self, Code, Codec, Error};
use envd::filesystem::*;
use envd::Timestamp;
use futures::StreamExt;
use hyper::body::Incoming;
use hyper::Request;
use inotify::{EventMask, Inotify, WatchMask};

use crate::rpc::{self, Reply};
use crate::Agent;

/// Events a polled watcher keeps until they are fetched.
const MAX_PENDING: usize = 10_000;
const MAX_DEPTH: u32 = 64;

/// A polled watcher: the events waiting to be fetched, and the task collecting them.
type Polled = (
    Arc<Mutex<Vec<FilesystemEvent>>>,
    tokio::task::JoinHandle<()>,
);

#[derive(Default)]
pub struct Watchers {
    next: AtomicU64,
    polled: Mutex<HashMap<String, Polled>>,
}

/// A relative path is under `/workspace`.
pub fn resolve(path: &str) -> PathBuf {
    if path.is_empty() {
        return PathBuf::from("/workspace");
    }
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        Path::new("/workspace").join(p)
    }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    let code = match e.kind() {
        std::io::ErrorKind::NotFound => Code::NotFound,
        std::io::ErrorKind::AlreadyExists => Code::AlreadyExists,
        std::io::ErrorKind::PermissionDenied => Code::PermissionDenied,
        _ if e.raw_os_error() == Some(libc::ENOTDIR) || e.raw_os_error() == Some(libc::EISDIR) => {
            Code::InvalidArgument
        }
        _ if e.raw_os_error() == Some(libc::ENOSPC) => Code::ResourceExhausted,
        _ => Code::Internal,
    };
    Error::new(code, format!("{}: {e}", path.display()))
}

pub fn entry(path: &Path) -> Result<EntryInfo, Error> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| io_error(path, e))?;
    let (kind, target, meta) = if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)
            .ok()
            .map(|t| t.to_string_lossy().into_owned());
        // A symlink reports what it points at, where that exists.
        let followed = std::fs::metadata(path).unwrap_or(meta);
        (FileType::Symlink, target, followed)
    } else if meta.is_dir() {
        (FileType::Directory, None, meta)
    } else {
        (FileType::File, None, meta)
    };
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
    Ok(EntryInfo {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into()),
        r#type: kind as i32,
        path: path.to_string_lossy().into_owned(),
        size: meta.len() as i64,
        mode: meta.permissions().mode() & 0o7777,
        permissions: permissions(meta.permissions().mode(), kind),
        owner: name_of("/etc/passwd", meta.uid()),
        group: name_of("/etc/group", meta.gid()),
        modified_time: modified.map(|d| Timestamp {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        }),
        symlink_target: target,
        metadata: HashMap::new(),
    })
}

fn permissions(mode: u32, kind: FileType) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        FileType::Directory => 'd',
        FileType::Symlink => 'L',
        _ => '-',
    });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// A user or group name from the container's own files, else the number.
fn name_of(file: &str, id: u32) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                f.next()?;
                (f.next()?.parse::<u32>().ok()? == id).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| id.to_string())
}

fn list(dir: &Path, depth: u32, out: &mut Vec<EntryInfo>) -> Result<(), Error> {
    let rd = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
    let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    names.sort();
    for p in names {
        let Ok(e) = entry(&p) else { continue };
        let is_dir = e.r#type == FileType::Directory as i32;
        out.push(e);
        if is_dir && depth > 1 {
            let _ = list(&p, depth - 1, out);
        }
    }
    Ok(())
}

pub async fn handle(agent: Arc<Agent>, method: &str, req: Request<Incoming>) -> Reply {
    let codec = Codec::of(&rpc::content_type(&req), method == "WatchDir").unwrap_or(Codec::Proto);
    match method {
        "Stat" => {
            let r = rpc::unary_request::<PathRequest>(req).await.map(|(m, _)| m);
            rpc::unary_reply(
                codec,
                r.and_then(|r| entry(&resolve(&r.path)).map(|e| EntryResponse { entry: Some(e) })),
            )
        }
        "ListDir" => {
            let r = rpc::unary_request::<ListDirRequest>(req)
                .await
                .map(|(m, _)| m)
                .and_then(|r| {
                    let path = resolve(&r.path);
                    let meta = std::fs::metadata(&path).map_err(|e| io_error(&path, e))?;
                    if !meta.is_dir() {
                        return Err(Error::new(
                            Code::InvalidArgument,
                            format!("{} is not a directory", path.display()),
                        ));
                    }
                    let mut entries = Vec::new();
                    list(&path, r.depth.clamp(1, MAX_DEPTH), &mut entries)?;
                    Ok(ListDirResponse { entries })
                });
            rpc::unary_reply(codec, r)
        }
        "MakeDir" => {
            let r = rpc::unary_request::<PathRequest>(req)
                .await
                .map(|(m, _)| m)
                .and_then(|r| {
                    let path = resolve(&r.path);
                    if path.is_dir() {
                        return Err(Error::new(
                            Code::AlreadyExists,
                            format!("{} exists", path.display()),
                        ));
                    }
                    std::fs::create_dir_all(&path).map_err(|e| io_error(&path, e))?;
                    entry(&path).map(|e| EntryResponse { entry: Some(e) })
                });
            rpc::unary_reply(codec, r)
        }
        "Move" => {
            let r = rpc::unary_request::<MoveRequest>(req)
                .await
                .map(|(m, _)| m)
                .and_then(|r| {
                    let (from, to) = (resolve(&r.source), resolve(&r.destination));
                    if let Some(parent) = to.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
                    }
                    std::fs::rename(&from, &to).map_err(|e| io_error(&from, e))?;
                    entry(&to).map(|e| EntryResponse { entry: Some(e) })
                });
            rpc::unary_reply(codec, r)
        }
        "Remove" => {
            let r = rpc::unary_request::<PathRequest>(req)
                .await
                .map(|(m, _)| m)
                .and_then(|r| {
                    let path = resolve(&r.path);
                    let meta = std::fs::symlink_metadata(&path).map_err(|e| io_error(&path, e))?;
                    if meta.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    }
                    .map_err(|e| io_error(&path, e))?;
                    Ok(RemoveResponse {})
                });
            rpc::unary_reply(codec, r)
        }
        "WatchDir" => match rpc::stream_request::<WatchDirRequest>(req)
            .await
            .map(|(m, _)| m)
            .and_then(watcher)
        {
            Ok(mut events) => {
                let (tx, reply) = rpc::stream_reply(codec);
                tokio::spawn(async move {
                    let start = WatchDirResponse {
                        event: Some(WatchEvent::Start(Empty {})),
                    };
                    if tx.send(codec.frame(&start)).await.is_err() {
                        return;
                    }
                    loop {
                        tokio::select! {
                            ev = events.recv() => match ev {
                                Some(ev) => {
                                    let m = WatchDirResponse { event: Some(WatchEvent::Filesystem(ev)) };
                                    if tx.send(codec.frame(&m)).await.is_err() { return; }
                                }
                                None => { let _ = tx.send(connect::end_frame(None)).await; return; }
                            },
                            _ = tokio::time::sleep(Duration::from_secs(20)) => {
                                let m = WatchDirResponse { event: Some(WatchEvent::Keepalive(Empty {})) };
                                if tx.send(codec.frame(&m)).await.is_err() { return; }
                            }
                            _ = tx.closed() => return,
                        }
                    }
                });
                reply
            }
            Err(e) => rpc::stream_error(codec, e),
        },
        "CreateWatcher" => {
            let r = match rpc::unary_request::<WatchDirRequest>(req)
                .await
                .map(|(m, _)| m)
                .and_then(watcher)
            {
                Ok(mut events) => {
                    let id = format!(
                        "w{}",
                        agent.watchers.next.fetch_add(1, Ordering::Relaxed) + 1
                    );
                    let pending: Arc<Mutex<Vec<FilesystemEvent>>> = Default::default();
                    let p = pending.clone();
                    let task = tokio::spawn(async move {
                        while let Some(ev) = events.recv().await {
                            let mut g = p.lock().unwrap();
                            if g.len() < MAX_PENDING {
                                g.push(ev);
                            }
                        }
                    });
                    agent
                        .watchers
                        .polled
                        .lock()
                        .unwrap()
                        .insert(id.clone(), (pending, task));
                    Ok(WatcherId { watcher_id: id })
                }
                Err(e) => Err(e),
            };
            rpc::unary_reply(codec, r)
        }
        "GetWatcherEvents" => {
            let r = rpc::unary_request::<WatcherId>(req)
                .await
                .map(|(m, _)| m)
                .and_then(|r| {
                    let polled = agent.watchers.polled.lock().unwrap();
                    let (pending, _) = polled.get(&r.watcher_id).ok_or_else(|| {
                        Error::new(Code::NotFound, format!("no watcher {}", r.watcher_id))
                    })?;
                    let events = std::mem::take(&mut *pending.lock().unwrap());
                    Ok(GetWatcherEventsResponse { events })
                });
            rpc::unary_reply(codec, r)
        }
        "RemoveWatcher" => {
            let r = rpc::unary_request::<WatcherId>(req)
                .await
                .map(|(m, _)| m)
                .and_then(|r| {
                    let removed = agent.watchers.polled.lock().unwrap().remove(&r.watcher_id);
                    match removed {
                        Some((_, task)) => {
                            task.abort();
                            Ok(Empty {})
                        }
                        None => Err(Error::new(
                            Code::NotFound,
                            format!("no watcher {}", r.watcher_id),
                        )),
                    }
                });
            rpc::unary_reply(codec, r)
        }
        other => rpc::connect_error(Error::new(
            Code::Unimplemented,
            format!("filesystem.Filesystem/{other}"),
        )),
    }
}

/// Watches a directory (and, when asked, its subdirectories, including ones made later); events arrive
/// on the receiver until it is dropped.
fn watcher(r: WatchDirRequest) -> Result<tokio::sync::mpsc::Receiver<FilesystemEvent>, Error> {
    let root = resolve(&r.path);
    let meta = std::fs::metadata(&root).map_err(|e| io_error(&root, e))?;
    if !meta.is_dir() {
        return Err(Error::new(
            Code::InvalidArgument,
            format!("{} is not a directory", root.display()),
        ));
    }
    let inotify =
        Inotify::init().map_err(|e| Error::new(Code::Internal, format!("inotify: {e}")))?;
    let mask = WatchMask::CREATE
        | WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ATTRIB;
    let mut dirs: HashMap<inotify::WatchDescriptor, PathBuf> = HashMap::new();
    let add = |watches: &mut inotify::Watches, dir: &Path, dirs: &mut HashMap<_, _>| {
        if let Ok(wd) = watches.add(dir, mask) {
            dirs.insert(wd, dir.to_path_buf());
        }
    };
    let mut watches = inotify.watches();
    add(&mut watches, &root, &mut dirs);
    if r.recursive {
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    add(&mut watches, &e.path(), &mut dirs);
                    stack.push(e.path());
                }
            }
        }
    }
    let mut stream = inotify
        .into_event_stream(vec![0u8; 64 * 1024])
        .map_err(|e| Error::new(Code::Internal, format!("inotify: {e}")))?;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                ev = stream.next() => {
                    let Some(Ok(ev)) = ev else { return };
                    let Some(dir) = dirs.get(&ev.wd).cloned() else { continue };
                    let Some(name) = ev.name else { continue };
                    let path = dir.join(&name);
                    let kind = if ev.mask.contains(EventMask::CREATE) || ev.mask.contains(EventMask::MOVED_TO) {
                        if ev.mask.contains(EventMask::MOVED_TO) { EventType::Rename } else { EventType::Create }
                    } else if ev.mask.contains(EventMask::DELETE) {
                        EventType::Remove
                    } else if ev.mask.contains(EventMask::MOVED_FROM) {
                        EventType::Rename
                    } else if ev.mask.contains(EventMask::ATTRIB) {
                        EventType::Chmod
                    } else if ev.mask.contains(EventMask::MODIFY) {
                        EventType::Write
                    } else {
                        // CLOSE_WRITE follows the writes already reported.
                        continue;
                    };
                    if r.recursive && ev.mask.contains(EventMask::ISDIR) && matches!(kind, EventType::Create | EventType::Rename) && path.is_dir() {
                        let mut w = stream.watches();
                        if let Ok(wd) = w.add(&path, mask) {
                            dirs.insert(wd, path.clone());
                        }
                    }
                    let rel = path.strip_prefix(&root).unwrap_or(&path).to_string_lossy().into_owned();
                    let entry = (r.include_entry && !matches!(kind, EventType::Remove)).then(|| entry(&path).ok()).flatten();
                    if tx.send(FilesystemEvent { name: rel, r#type: kind as i32, entry }).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    Ok(rx)
}
