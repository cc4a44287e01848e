//! One berth per data dir. Two servers on one store would each run start-up recovery on the other's
//! live work (interrupting its missions, requeueing its tasks); so `serve` takes an exclusive lock on
//! `<data-dir>/berth.lock` before it touches anything, and a second one refuses to start. The kernel
//! drops the lock with the process, whatever ends it (kill -9 included): nothing stale is left.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The held lock; dropping it releases the data dir.
pub struct DataDirLock {
    _lock: Flock<File>,
}

pub fn lock(data_dir: &Path) -> anyhow::Result<DataDirLock> {
    let path = data_dir.join("berth.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, Errno::EWOULDBLOCK)) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "another berth is using data dir {} (pid {}); stop it first, or give this one its own --data-dir",
                data_dir.display(),
                holder.trim()
            )
        }
        Err((_, e)) => bail!("lock {}: {e}", path.display()),
    };
    // Who holds it, for the message a second berth prints.
    lock.set_len(0)?;
    write!(&mut *lock, "{}", std::process::id())?;
    lock.flush()?;
    Ok(DataDirLock { _lock: lock })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_data_dir_is_refused_until_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        let err = lock(dir.path()).err().expect("refused").to_string();
        assert!(err.contains("another berth is using data dir"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        lock(dir.path()).expect("free again");
    }
}
