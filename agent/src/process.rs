//! `process.Process`: processes the agent starts and keeps — their output buffered (up to a cap) with a
//! sequence number per event, so a client that went away, or berth after a restart, resumes where it
//! left off; stdin, signals, PTYs and resizing.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envd::connect::{self, Code, Codec, Error};
use envd::process::*;
use hyper::body::Incoming;
use hyper::Request;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::rpc::{self, Reply};
use crate::{exec, tree, Agent};

/// Processes running at once, past which a start is refused.
const MAX_RUNNING: usize = 256;
/// Output kept per process for reconnecting clients; older output is dropped first.
const MAX_BUFFERED: usize = 8 << 20;
/// Ended processes kept (for their output) at most this many and this long.
const KEEP_ENDED: usize = 128;
const KEEP_ENDED_FOR: Duration = Duration::from_secs(600);
const KEEPALIVE: Duration = Duration::from_secs(20);

#[derive(Default)]
pub struct Table {
    procs: Mutex<HashMap<u32, Arc<Proc>>>,
}

enum Stdin {
    Pipe(tokio::process::ChildStdin),
    Pty(tokio::fs::File),
}

pub struct Proc {
    pid: u32,
    config: ProcessConfig,
    tag: Option<String>,
    marker: String,
    master: Option<Arc<OwnedFd>>,
    stdin: tokio::sync::Mutex<Option<Stdin>>,
    log: Mutex<Log>,
    seq: watch::Sender<u64>,
}

#[derive(Default)]
struct Log {
    events: VecDeque<(u64, ProcessEvent)>,
    bytes: usize,
    next: u64,
    ended_at: Option<Instant>,
}

impl Proc {
    fn push(&self, event: Event) {
        let mut log = self.log.lock().unwrap();
        if log.ended_at.is_some() {
            return;
        }
        log.next += 1;
        let seq = log.next;
        if let Event::Data(d) = &event {
            log.bytes += data_len(d);
        }
        if matches!(event, Event::End(_)) {
            log.ended_at = Some(Instant::now());
        }
        log.events
            .push_back((seq, ProcessEvent { event: Some(event) }));
        // Drop the oldest output (never the start) while over the cap.
        while log.bytes > MAX_BUFFERED {
            let Some(i) = log
                .events
                .iter()
                .position(|(_, e)| matches!(e.event, Some(Event::Data(_))))
            else {
                break;
            };
            if let Some((
                _,
                ProcessEvent {
                    event: Some(Event::Data(d)),
                },
            )) = log.events.remove(i)
            {
                log.bytes -= data_len(&d);
            }
        }
        drop(log);
        self.seq.send_replace(seq);
    }

    /// Events after `after`, and whether the process has ended with all of them delivered.
    fn since(&self, after: u64) -> (Vec<(u64, ProcessEvent)>, bool) {
        let log = self.log.lock().unwrap();
        let events: Vec<_> = log
            .events
            .iter()
            .filter(|(s, _)| *s > after)
            .cloned()
            .collect();
        let done = log.ended_at.is_some() && events.last().is_none_or(|(s, _)| *s == log.next);
        (events, done)
    }

    fn running(&self) -> bool {
        self.log.lock().unwrap().ended_at.is_none()
    }
}

fn data_len(d: &DataEvent) -> usize {
    match &d.output {
        Some(Output::Stdout(b)) | Some(Output::Stderr(b)) | Some(Output::Pty(b)) => b.len(),
        None => 0,
    }
}

impl Table {
    fn find(&self, selector: Option<ProcessSelector>) -> Result<Arc<Proc>, Error> {
        let procs = self.procs.lock().unwrap();
        let found = match selector.and_then(|s| s.selector) {
            Some(Selector::Pid(pid)) => procs.get(&pid).cloned(),
            Some(Selector::Tag(tag)) => procs
                .values()
                .filter(|p| p.tag.as_deref() == Some(tag.as_str()))
                .max_by_key(|p| p.running())
                .cloned(),
            None => return Err(Error::new(Code::InvalidArgument, "no process selected")),
        };
        found.ok_or_else(|| Error::new(Code::NotFound, "no such process"))
    }

    fn prune(&self) {
        let mut procs = self.procs.lock().unwrap();
        let mut ended: Vec<(Instant, u32)> = procs
            .values()
            .filter_map(|p| p.log.lock().unwrap().ended_at.map(|t| (t, p.pid)))
            .collect();
        ended.sort();
        let excess = ended.len().saturating_sub(KEEP_ENDED);
        for (i, (t, pid)) in ended.into_iter().enumerate() {
            if i < excess || t.elapsed() > KEEP_ENDED_FOR {
                procs.remove(&pid);
            }
        }
    }

    fn running_count(&self) -> usize {
        self.procs
            .lock()
            .unwrap()
            .values()
            .filter(|p| p.running())
            .count()
    }
}

pub async fn handle(agent: Arc<Agent>, method: &str, req: Request<Incoming>) -> Reply {
    let table = &agent.processes;
    let streaming = matches!(method, "Start" | "Connect" | "StreamInput");
    let codec = Codec::of(&rpc::content_type(&req), streaming).unwrap_or(Codec::Proto);
    match method {
        "Start" => match rpc::stream_request::<StartRequest>(req)
            .await
            .map(|(m, _)| m)
        {
            Ok(r) => match start(&agent, r).await {
                Ok(p) => stream(p, Some(0), false, codec),
                Err(e) => rpc::stream_error(codec, e),
            },
            Err(e) => rpc::stream_error(codec, e),
        },
        "Connect" => match rpc::stream_request::<ConnectRequest>(req)
            .await
            .map(|(m, _)| m)
        {
            Ok(r) => match table.find(r.process) {
                Ok(p) => stream(p, r.berth_after, true, codec),
                Err(e) => rpc::stream_error(codec, e),
            },
            Err(e) => rpc::stream_error(codec, e),
        },
        "List" => {
            let r = rpc::unary_request::<ListRequest>(req)
                .await
                .map(|(m, _)| m)
                .map(|_| {
                    let procs = table.procs.lock().unwrap();
                    let mut processes: Vec<ProcessInfo> = procs
                        .values()
                        .filter(|p| p.running())
                        .map(|p| ProcessInfo {
                            config: Some(p.config.clone()),
                            pid: p.pid,
                            tag: p.tag.clone(),
                        })
                        .collect();
                    processes.sort_by_key(|p| p.pid);
                    ListResponse { processes }
                });
            rpc::unary_reply(codec, r)
        }
        "SendInput" => {
            let r = match rpc::unary_request::<SendInputRequest>(req)
                .await
                .map(|(m, _)| m)
            {
                Ok(r) => match table.find(r.process) {
                    Ok(p) => send_input(&p, r.input).await.map(|_| SendInputResponse {}),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            rpc::unary_reply(codec, r)
        }
        "StreamInput" => {
            let mut rx = rpc::client_stream::<StreamInputRequest>(req).1;
            let mut target: Option<Arc<Proc>> = None;
            let mut result = Ok(());
            while let Some(m) = rx.recv().await {
                let step = match m.map(|m| m.event) {
                    Ok(Some(StreamInput::Start(s))) => table.find(s.process).map(|p| {
                        target = Some(p);
                    }),
                    Ok(Some(StreamInput::Data(d))) => match &target {
                        Some(p) => send_input(p, d.input).await,
                        None => Err(Error::new(
                            Code::FailedPrecondition,
                            "input before the start message",
                        )),
                    },
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = step {
                    result = Err(e);
                    break;
                }
            }
            let (tx, reply) = rpc::stream_reply(codec);
            tokio::spawn(async move {
                match result {
                    Ok(()) => {
                        let _ = tx.send(codec.frame(&StreamInputResponse {})).await;
                        let _ = tx.send(connect::end_frame(None)).await;
                    }
                    Err(e) => {
                        let _ = tx.send(connect::end_frame(Some(e))).await;
                    }
                }
            });
            reply
        }
        "CloseStdin" => {
            let r = match rpc::unary_request::<CloseStdinRequest>(req)
                .await
                .map(|(m, _)| m)
            {
                Ok(r) => match table.find(r.process) {
                    Ok(p) => close_stdin(&p).await.map(|_| CloseStdinResponse {}),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            rpc::unary_reply(codec, r)
        }
        "SendSignal" => {
            let r = match rpc::unary_request::<SendSignalRequest>(req)
                .await
                .map(|(m, _)| m)
            {
                Ok(r) => match table.find(r.process) {
                    Ok(p) => signal(&p, r.signal).await.map(|_| SendSignalResponse {}),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            rpc::unary_reply(codec, r)
        }
        "Update" => {
            let r = match rpc::unary_request::<UpdateRequest>(req)
                .await
                .map(|(m, _)| m)
            {
                Ok(r) => match table.find(r.process) {
                    Ok(p) => resize(&p, r.pty).map(|_| UpdateResponse {}),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            rpc::unary_reply(codec, r)
        }
        other => rpc::connect_error(Error::new(
            Code::Unimplemented,
            format!("process.Process/{other}"),
        )),
    }
}

async fn start(agent: &Agent, r: StartRequest) -> Result<Arc<Proc>, Error> {
    agent.processes.prune();
    if agent.processes.running_count() >= MAX_RUNNING {
        return Err(Error::new(
            Code::ResourceExhausted,
            format!("{MAX_RUNNING} processes already run; wait for one to end or kill one"),
        ));
    }
    let config = r
        .process
        .ok_or_else(|| Error::new(Code::InvalidArgument, "no process to start"))?;
    if config.cmd.is_empty() {
        return Err(Error::new(Code::InvalidArgument, "cmd must not be empty"));
    }
    let cwd = match config.cwd.as_deref() {
        Some(c) if !c.is_empty() => c.to_string(),
        _ if std::path::Path::new("/workspace").is_dir() => "/workspace".into(),
        _ => "/".into(),
    };
    if !std::path::Path::new(&cwd).is_dir() {
        return Err(Error::new(
            Code::InvalidArgument,
            format!("cwd {cwd} does not exist"),
        ));
    }
    let marker = exec::marker("proc");
    let mut cmd = exec::command(
        &config.cmd,
        &config.args,
        &cwd,
        config.envs.clone(),
        &marker,
    );
    let with_stdin = r.stdin.unwrap_or(true);
    let spawn_err =
        |e: std::io::Error| Error::new(Code::InvalidArgument, format!("start {}: {e}", config.cmd));
    let (child, master, stdin, outputs): (_, _, _, Vec<(bool, Box<dyn AsyncRead + Unpin + Send>)>) =
        if let Some(pty) = r.pty {
            let size = pty.size.unwrap_or(PtySize { cols: 80, rows: 24 });
            let (master, slave) = open_pty(size)
                .map_err(|e| Error::new(Code::Internal, format!("open a pty: {e}")))?;
            let slave_fd = slave.as_raw_fd();
            cmd.stdin(Stdio::from(slave.try_clone().map_err(spawn_err)?))
                .stdout(Stdio::from(slave.try_clone().map_err(spawn_err)?))
                .stderr(Stdio::from(slave));
            cmd.env(
                "TERM",
                config
                    .envs
                    .get("TERM")
                    .cloned()
                    .unwrap_or_else(|| "xterm-256color".into()),
            );
            unsafe {
                cmd.pre_exec(move || {
                    // The pty becomes the session's controlling terminal (setsid ran before).
                    libc::ioctl(0, libc::TIOCSCTTY as _, 0);
                    let _ = slave_fd;
                    Ok(())
                });
            }
            let child = cmd.spawn().map_err(spawn_err)?;
            let master = Arc::new(master);
            let reader = tokio::fs::File::from_std(std::fs::File::from(
                master.try_clone().map_err(spawn_err)?,
            ));
            let writer = tokio::fs::File::from_std(std::fs::File::from(
                master.try_clone().map_err(spawn_err)?,
            ));
            let outputs: Vec<(bool, Box<dyn AsyncRead + Unpin + Send>)> =
                vec![(true, Box::new(reader))];
            (child, Some(master), Some(Stdin::Pty(writer)), outputs)
        } else {
            cmd.stdin(if with_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            let mut child = cmd.spawn().map_err(spawn_err)?;
            let stdin = child.stdin.take().map(Stdin::Pipe);
            let mut outputs: Vec<(bool, Box<dyn AsyncRead + Unpin + Send>)> = Vec::new();
            if let Some(o) = child.stdout.take() {
                outputs.push((false, Box::new(o)));
            }
            if let Some(e) = child.stderr.take() {
                outputs.push((false, Box::new(e)));
            }
            (child, None, stdin, outputs)
        };
    let pid = child.id().unwrap_or(0);
    let (seq, _) = watch::channel(0);
    let proc = Arc::new(Proc {
        pid,
        config: ProcessConfig {
            cwd: Some(cwd),
            ..config
        },
        tag: r.tag,
        marker,
        master,
        stdin: tokio::sync::Mutex::new(stdin),
        log: Mutex::new(Log::default()),
        seq,
    });
    proc.push(Event::Start(StartEvent { pid }));
    agent
        .processes
        .procs
        .lock()
        .unwrap()
        .insert(pid, proc.clone());
    let mut readers = Vec::new();
    for (i, (is_pty, out)) in outputs.into_iter().enumerate() {
        let kind = if is_pty { 2 } else { i };
        readers.push(tokio::spawn(pump(proc.clone(), out, kind)));
    }
    let timeout = (r.berth_timeout_secs > 0).then(|| Duration::from_secs(r.berth_timeout_secs));
    tokio::spawn(wait(proc.clone(), child, readers, timeout));
    Ok(proc)
}

async fn pump(proc: Arc<Proc>, mut out: Box<dyn AsyncRead + Unpin + Send>, kind: usize) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match out.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let bytes = buf[..n].to_vec();
                let output = match kind {
                    0 => Output::Stdout(bytes),
                    1 => Output::Stderr(bytes),
                    _ => Output::Pty(bytes),
                };
                proc.push(Event::Data(DataEvent {
                    output: Some(output),
                }));
            }
        }
    }
}

async fn wait(
    proc: Arc<Proc>,
    mut child: tokio::process::Child,
    readers: Vec<tokio::task::JoinHandle<()>>,
    timeout: Option<Duration>,
) {
    let status = match timeout {
        Some(t) => {
            match tokio::time::timeout(t, child.wait()).await {
                Ok(s) => s.ok(),
                Err(_) => {
                    tree::kill(&proc.marker, Some(proc.pid)).await;
                    let _ = child.wait().await;
                    for r in readers {
                        r.abort();
                    }
                    proc.push(Event::End(EndEvent {
                    exit_code: -1,
                    exited: false,
                    status: "timed out".into(),
                    error: Some(format!("the process ran past its timeout of {}s and was killed with its children", t.as_secs())),
                }));
                    return;
                }
            }
        }
        None => child.wait().await.ok(),
    };
    // The output that was written before the exit; what children left running print later is theirs.
    for mut r in readers {
        if tokio::time::timeout(Duration::from_millis(200), &mut r)
            .await
            .is_err()
        {
            r.abort();
        }
    }
    *proc.stdin.lock().await = None;
    let end = match status {
        Some(s) => {
            use std::os::unix::process::ExitStatusExt;
            match (s.code(), s.signal()) {
                (Some(c), _) => EndEvent {
                    exit_code: c,
                    exited: true,
                    status: format!("exit status {c}"),
                    error: None,
                },
                (None, Some(sig)) => EndEvent {
                    exit_code: -1,
                    exited: false,
                    status: format!("signal: {}", signal_name(sig)),
                    error: None,
                },
                _ => EndEvent {
                    exit_code: -1,
                    exited: false,
                    status: "unknown".into(),
                    error: None,
                },
            }
        }
        None => EndEvent {
            exit_code: -1,
            exited: false,
            status: "lost".into(),
            error: Some("waiting for the process failed".into()),
        },
    };
    proc.push(Event::End(end));
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGKILL => "killed".into(),
        libc::SIGTERM => "terminated".into(),
        libc::SIGINT => "interrupt".into(),
        libc::SIGHUP => "hangup".into(),
        other => format!("signal {other}"),
    }
}

/// A stream of the process's events after `after` (all of them from 0; only new ones when `None`),
/// ending after its end event. `connect`: a reattaching client gets a start event first, as envd's does.
fn stream(proc: Arc<Proc>, after: Option<u64>, connect: bool, codec: Codec) -> Reply {
    let (tx, reply) = rpc::stream_reply(codec);
    tokio::spawn(async move {
        let mut rx = proc.seq.subscribe();
        let mut cursor = after.unwrap_or_else(|| *rx.borrow_and_update());
        if connect {
            let start = StreamResponse {
                event: Some(ProcessEvent {
                    event: Some(Event::Start(StartEvent { pid: proc.pid })),
                }),
                berth_seq: 0,
            };
            if tx.send(codec.frame(&start)).await.is_err() {
                return;
            }
        }
        loop {
            rx.borrow_and_update();
            let (events, done) = proc.since(cursor);
            for (seq, event) in events {
                // A reattaching client has had the start already.
                if connect && matches!(event.event, Some(Event::Start(_))) {
                    cursor = seq;
                    continue;
                }
                if tx
                    .send(codec.frame(&StreamResponse {
                        event: Some(event),
                        berth_seq: seq,
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
                cursor = seq;
            }
            if done {
                let _ = tx.send(connect::end_frame(None)).await;
                return;
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { let _ = tx.send(connect::end_frame(None)).await; return; },
                _ = tokio::time::sleep(KEEPALIVE) => {
                    let ka = StreamResponse { event: Some(ProcessEvent { event: Some(Event::Keepalive(KeepAlive {})) }), berth_seq: 0 };
                    if tx.send(codec.frame(&ka)).await.is_err() { return; }
                }
                _ = tx.closed() => return,
            }
        }
    });
    reply
}

async fn send_input(proc: &Proc, input: Option<ProcessInput>) -> Result<(), Error> {
    let bytes = match input.and_then(|i| i.input) {
        Some(Input::Stdin(b)) | Some(Input::Pty(b)) => b,
        None => return Ok(()),
    };
    let mut stdin = proc.stdin.lock().await;
    let result = match stdin.as_mut() {
        Some(Stdin::Pipe(p)) => p.write_all(&bytes).await.and(p.flush().await),
        Some(Stdin::Pty(p)) => p.write_all(&bytes).await.and(p.flush().await),
        None if proc.running() => {
            return Err(Error::new(
                Code::FailedPrecondition,
                "the process was started without stdin, or its stdin is closed",
            ))
        }
        None => {
            return Err(Error::new(
                Code::FailedPrecondition,
                "the process has ended",
            ))
        }
    };
    result.map_err(|e| {
        Error::new(
            Code::FailedPrecondition,
            format!("write to the process: {e}"),
        )
    })
}

async fn close_stdin(proc: &Proc) -> Result<(), Error> {
    let mut stdin = proc.stdin.lock().await;
    match stdin.as_ref() {
        Some(Stdin::Pty(_)) => Err(Error::new(
            Code::FailedPrecondition,
            "a pty has no stdin to close; send Ctrl-D (0x04)",
        )),
        _ => {
            *stdin = None;
            Ok(())
        }
    }
}

async fn signal(proc: &Proc, sig: i32) -> Result<(), Error> {
    if !(1..=64).contains(&sig) {
        return Err(Error::new(
            Code::InvalidArgument,
            format!("{sig} is not a signal"),
        ));
    }
    if !proc.running() {
        return Err(Error::new(Code::NotFound, "the process has ended"));
    }
    if sig == libc::SIGKILL {
        tree::kill(&proc.marker, Some(proc.pid)).await;
        // Answer once it is recorded as ended, so a listing right after no longer shows it.
        let mut rx = proc.seq.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while proc.running() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        return Ok(());
    }
    tree::signal_group(proc.pid, sig)
        .map_err(|e| Error::new(Code::Internal, format!("signal the process: {e}")))
}

fn resize(proc: &Proc, pty: Option<Pty>) -> Result<(), Error> {
    let Some(size) = pty.and_then(|p| p.size) else {
        return Ok(());
    };
    let Some(master) = &proc.master else {
        return Err(Error::new(
            Code::FailedPrecondition,
            "the process has no pty",
        ));
    };
    set_size(master.as_raw_fd(), size)
        .map_err(|e| Error::new(Code::Internal, format!("resize: {e}")))
}

fn set_size(fd: i32, size: PtySize) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows.clamp(1, 1000) as u16,
        ws_col: size.cols.clamp(1, 1000) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn open_pty(size: PtySize) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (mut master, mut slave) = (0, 0);
    if unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    unsafe {
        libc::fcntl(master.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(slave.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
    }
    set_size(master.as_raw_fd(), size)?;
    Ok((master, slave))
}
