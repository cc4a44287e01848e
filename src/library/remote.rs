//! The library's remote: status (branch, ahead/behind, clean) and sync (fetch, fast-forward only, push
//! local commits). A diverged history is refused with what to do, never merged or overwritten.

use serde::Serialize;
use utoipa::ToSchema;

use super::{internal, ItemType, Library};
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Serialize, ToSchema)]
pub struct LibraryStatus {
    pub path: String,
    pub branch: String,
    pub remote: Option<String>,
    pub head: Option<String>,
    /// Relative to the remote branch as last fetched.
    pub ahead: u64,
    pub behind: u64,
    pub clean: bool,
    /// Files changed but not committed (berth commits every write: normally none).
    pub modified_files: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncOutcome {
    pub pulled_commits: u64,
    pub pushed_commits: u64,
    /// Items whose files the pull changed, as `type/name`.
    pub changed: Vec<String>,
    #[serde(skip)]
    pub changed_items: Vec<(ItemType, String)>,
    pub workspaces_synced: Vec<String>,
}

impl Library {
    async fn branch(&self) -> ApiResult<String> {
        let b = self
            .inner
            .git
            .run(&["symbolic-ref", "--short", "HEAD"])
            .await
            .map_err(internal)?;
        Ok(b.trim().to_string())
    }

    async fn ahead_behind(&self, upstream: &str) -> ApiResult<(u64, u64)> {
        let git = &self.inner.git;
        if !git
            .succeeds(&["rev-parse", "--verify", "-q", upstream])
            .await
        {
            let local = git
                .run(&["rev-list", "--count", "HEAD"])
                .await
                .unwrap_or_default();
            return Ok((local.trim().parse().unwrap_or(0), 0));
        }
        if !git.succeeds(&["rev-parse", "--verify", "-q", "HEAD"]).await {
            let remote = git
                .run(&["rev-list", "--count", upstream])
                .await
                .map_err(internal)?;
            return Ok((0, remote.trim().parse().unwrap_or(0)));
        }
        let counts = git
            .run(&[
                "rev-list",
                "--left-right",
                "--count",
                &format!("HEAD...{upstream}"),
            ])
            .await
            .map_err(internal)?;
        let mut it = counts
            .split_whitespace()
            .map(|n| n.parse::<u64>().unwrap_or(0));
        Ok((it.next().unwrap_or(0), it.next().unwrap_or(0)))
    }

    pub async fn status(&self) -> ApiResult<LibraryStatus> {
        let git = &self.inner.git;
        let branch = self.branch().await?;
        let (ahead, behind) = if self.inner.remote.is_some() {
            self.ahead_behind(&format!("origin/{branch}")).await?
        } else {
            (0, 0)
        };
        let porcelain = git
            .run(&["status", "--porcelain"])
            .await
            .map_err(internal)?;
        let head = git
            .run(&["rev-parse", "-q", "--verify", "HEAD"])
            .await
            .ok()
            .map(|h| h.trim().to_string());
        Ok(LibraryStatus {
            path: self.root().to_string_lossy().into_owned(),
            branch,
            remote: self.inner.remote.as_deref().map(redact_url),
            head,
            ahead,
            behind,
            clean: porcelain.trim().is_empty(),
            modified_files: porcelain
                .lines()
                .filter_map(|l| l.get(3..))
                .map(str::to_string)
                .collect(),
        })
    }

    /// Fetches, fast-forwards to the remote, and pushes local commits the remote lacks.
    pub async fn pull(&self) -> ApiResult<SyncOutcome> {
        if self.inner.remote.is_none() {
            return Err(ApiError::invalid(
                "the library has no remote; set BERTH_LIBRARY_REMOTE",
            ));
        }
        let _guard = self.writing().await;
        let git = &self.inner.git;
        let branch = self.branch().await?;
        if let Err(e) = git.run(&["fetch", "-q", "origin"]).await {
            return Err(ApiError::ConflictCode {
                code: "remote_unreachable",
                message: format!(
                    "cannot fetch the library remote: {}",
                    redact_url(&e.message)
                ),
            });
        }
        let upstream = format!("origin/{branch}");
        let (ahead, behind) = self.ahead_behind(&upstream).await?;
        if ahead > 0 && behind > 0 {
            return Err(ApiError::ConflictCode {
                code: "diverged_history",
                message: format!(
                "the library has {ahead} commit(s) the remote lacks and the remote has {behind} \
                 the library lacks; reconcile them by hand in {} (e.g. `git pull --rebase`, then push), then sync again",
                self.root().display()
            ),
            });
        }
        let mut changed_items: Vec<(ItemType, String)> = Vec::new();
        if behind > 0 {
            let had_head = git.succeeds(&["rev-parse", "--verify", "-q", "HEAD"]).await;
            let names = if had_head {
                git.run(&["diff", "--name-only", "HEAD", &upstream])
                    .await
                    .map_err(internal)?
            } else {
                git.run(&["ls-tree", "-r", "--name-only", &upstream])
                    .await
                    .map_err(internal)?
            };
            if had_head {
                git.run(&["merge", "-q", "--ff-only", &upstream])
                    .await
                    .map_err(internal)?;
            } else {
                git.run(&["reset", "-q", "--hard", &upstream])
                    .await
                    .map_err(internal)?;
            }
            for path in names.lines() {
                if let Some(item) = ItemType::item_of(path) {
                    if !changed_items.contains(&item) {
                        changed_items.push(item);
                    }
                }
            }
        }
        if ahead > 0 {
            git.run(&["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")])
                .await
                .map_err(|e| ApiError::ConflictCode {
                    code: "push_failed",
                    message: format!(
                        "pushing to the library remote failed: {}",
                        redact_url(&e.message)
                    ),
                })?;
            let _ = git.run(&["fetch", "-q", "origin"]).await;
        }
        Ok(SyncOutcome {
            pulled_commits: behind,
            pushed_commits: ahead,
            changed: changed_items
                .iter()
                .map(|(t, n)| format!("{}/{n}", t.dir()))
                .collect(),
            changed_items,
            workspaces_synced: Vec::new(),
        })
    }
}

/// Removes credentials from URLs (`https://user:token@host/...`) before they are logged or answered.
fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_inclusive(char::is_whitespace) {
        match (word.find("://"), word.find('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                out.push_str(&word[..scheme + 3]);
                out.push_str("***");
                out.push_str(&word[at..]);
            }
            _ => out.push_str(word),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            super::redact_url("fatal: https://bob:tok@example.invalid/x.git not found"),
            "fatal: https://***@example.invalid/x.git not found"
        );
        assert_eq!(super::redact_url("/srv/git/lib.git"), "/srv/git/lib.git");
    }
}
