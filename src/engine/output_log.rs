//! Where a command's output goes besides the capture: a log file on the host (the init log), appended as
//! chunks arrive so it can be read while the command runs, and capped: past `HEAD` bytes it keeps only
//! the last `TAIL` bytes after a line saying so, so a script printing without end never fills the host's
//! disk. Write failures are logged once and otherwise ignored: a full disk must not fail a build.

use std::collections::VecDeque;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// What a log keeps from its start.
const HEAD: u64 = 4 << 20;
/// What it keeps from its end once past `HEAD`.
const TAIL: usize = 4 << 20;

fn marker() -> String {
    format!(
        "\n== berth: this log passed {} MiB: its first {} MiB are above, the middle was dropped, and what follows is its last {} MiB at most\n",
        (HEAD as usize + TAIL) >> 20,
        HEAD >> 20,
        TAIL >> 20
    )
}

pub struct OutputSink {
    file: Option<tokio::fs::File>,
    failed: bool,
    /// Bytes in the file.
    len: u64,
    /// Once capped: where the tail starts in the file, and the tail itself.
    tail: Option<(u64, VecDeque<u8>)>,
}

impl OutputSink {
    pub fn none() -> Self {
        Self {
            file: None,
            failed: false,
            len: 0,
            tail: None,
        }
    }

    pub async fn append_to(path: &Path, truncate: bool) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(!truncate)
            .read(true)
            .write(true)
            .truncate(truncate)
            .open(path)
            .await?;
        let len = file.metadata().await?.len();
        let mut sink = Self {
            file: None,
            failed: false,
            len,
            tail: None,
        };
        if len > HEAD {
            // A log capped by an earlier run: its head stays, its end becomes this run's tail.
            let keep = (len - HEAD).min(TAIL as u64);
            file.seek(std::io::SeekFrom::Start(len - keep)).await?;
            let mut end = Vec::with_capacity(keep as usize);
            file.read_to_end(&mut end).await?;
            file.set_len(HEAD).await?;
            file.seek(std::io::SeekFrom::Start(HEAD)).await?;
            sink.len = HEAD;
            sink.file = Some(file);
            sink.start_tail().await;
            sink.append_tail(&end).await;
        } else {
            sink.file = Some(file);
        }
        Ok(sink)
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        if self.file.is_none() {
            return;
        }
        if self.tail.is_none() {
            let room = HEAD.saturating_sub(self.len) as usize;
            if bytes.len() <= room {
                self.raw(bytes).await;
                return;
            }
            self.raw(&bytes[..room]).await;
            self.start_tail().await;
            self.append_tail(&bytes[room..]).await;
            return;
        }
        self.append_tail(bytes).await;
    }

    async fn start_tail(&mut self) {
        self.raw(marker().as_bytes()).await;
        self.tail = Some((self.len, VecDeque::new()));
    }

    /// Appends to the tail; when the file holds twice the tail, it is cut back to the last `TAIL` bytes
    /// (each byte is written about twice, and the file never holds more than head + 2 × tail).
    async fn append_tail(&mut self, bytes: &[u8]) {
        let Some((start, ring)) = self.tail.as_mut() else {
            return;
        };
        ring.extend(bytes);
        let excess = ring.len().saturating_sub(TAIL);
        ring.drain(..excess);
        let start = *start;
        if self.len + bytes.len() as u64 <= start + 2 * TAIL as u64 {
            self.raw(bytes).await;
            return;
        }
        let kept: Vec<u8> = ring.iter().copied().collect();
        let cut = match &mut self.file {
            // The cursor goes back too: a file not opened for appending writes where it points.
            Some(f) => match f.set_len(start).await {
                Ok(()) => f.seek(std::io::SeekFrom::Start(start)).await.map(|_| ()),
                Err(e) => Err(e),
            },
            None => return,
        };
        match cut {
            Ok(()) => {
                self.len = start;
                self.raw(&kept).await;
            }
            Err(e) => self.failed_once(&e),
        }
    }

    async fn raw(&mut self, bytes: &[u8]) {
        let Some(f) = &mut self.file else { return };
        match f.write_all(bytes).await {
            Ok(()) => self.len += bytes.len() as u64,
            Err(e) => self.failed_once(&e),
        }
    }

    fn failed_once(&mut self, e: &std::io::Error) {
        if !self.failed {
            tracing::warn!(error = %e, "writing an init log failed");
            self.failed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_log_keeps_its_head_and_its_tail_and_stays_under_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("init.log");
        let mut sink = OutputSink::append_to(&path, true).await.unwrap();
        sink.write(b"first line\n").await;
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..(40 << 20) / chunk.len() {
            sink.write(&chunk).await;
        }
        sink.write(b"\nlast line\n").await;
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len <= HEAD + 2 * TAIL as u64 + 1024, "{len}");
        let text = std::fs::read(&path).unwrap();
        assert!(text.starts_with(b"first line\n"));
        assert!(text.ends_with(b"\nlast line\n"));
        let marker_at = text.windows(20).position(|w| w == b"== berth: this log p");
        assert!(marker_at.is_some());
        // A later run appending to it (a rerun-init) keeps it under the cap too.
        drop(sink);
        let mut again = OutputSink::append_to(&path, false).await.unwrap();
        for _ in 0..(20 << 20) / chunk.len() {
            again.write(&chunk).await;
        }
        again.write(b"rerun end\n").await;
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len <= HEAD + 2 * TAIL as u64 + 1024, "{len}");
        let text = std::fs::read(&path).unwrap();
        assert!(text.starts_with(b"first line\n"));
        assert!(text.ends_with(b"rerun end\n"));
    }
}
