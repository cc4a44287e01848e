//! Images: presence checks, pulls, builds from a generated tar context, import of a bootstrapped root
//! filesystem, removal.

use std::time::Duration;

use bollard::image::{
    BuildImageOptions, CreateImageOptions, ListImagesOptions, RemoveImageOptions,
};
use bytes::Bytes;
use futures::StreamExt;

use super::{labels, Engine, EngineError, EngineResult, OutputSink};

/// A build context assembled in memory: a Dockerfile plus the files it copies.
pub struct BuildContext {
    files: Vec<(String, Vec<u8>, u32)>,
}

impl BuildContext {
    pub fn new(dockerfile: &str) -> Self {
        Self {
            files: vec![("Dockerfile".into(), dockerfile.as_bytes().to_vec(), 0o644)],
        }
    }
    pub fn add(&mut self, path: &str, contents: &[u8], mode: u32) {
        self.files.push((path.into(), contents.to_vec(), mode));
    }
    pub fn into_tar(self) -> std::io::Result<Vec<u8>> {
        tar_of(
            self.files
                .iter()
                .map(|(p, c, m)| (p.as_str(), c.as_slice(), *m)),
        )
    }
}

/// A tar archive of `(path, contents, mode)` entries, owned by root.
pub fn tar_of<'a>(
    files: impl Iterator<Item = (&'a str, &'a [u8], u32)>,
) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        builder.append_data(&mut header, path, contents)?;
    }
    builder.into_inner()
}

/// Reads a pull or import progress stream to its end; the engine reports failures inside it.
async fn drain_create_image(
    op: &str,
    stream: &mut (impl futures::Stream<
        Item = Result<bollard::models::CreateImageInfo, bollard::errors::Error>,
    > + Unpin),
) -> EngineResult<()> {
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| EngineError::from_bollard(op, e))?;
        if let Some(err) = info.error {
            return Err(EngineError::other(op, err));
        }
    }
    Ok(())
}

impl Engine {
    /// The image's id when it exists locally.
    pub async fn image_id(&self, reference: &str) -> EngineResult<Option<String>> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(i.id),
            Err(e) => {
                let e = EngineError::from_bollard(format!("inspect image {reference}"), e);
                if e.is_not_found() {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Pulls `reference` from its registry, giving up after `timeout`.
    pub async fn pull(&self, reference: &str, timeout: Duration) -> EngineResult<()> {
        let op = format!("pull image {reference}");
        let pull = async {
            let mut stream = std::pin::pin!(self.docker.create_image(
                Some(CreateImageOptions {
                    from_image: reference,
                    ..Default::default()
                }),
                None,
                None,
            ));
            drain_create_image(&op, &mut stream).await
        };
        tokio::time::timeout(timeout, pull).await.map_err(|_| {
            EngineError::other(&op, format!("timed out after {}s", timeout.as_secs()))
        })?
    }

    /// Builds `tag` from `context`, streaming the builder's output into `log`. Returns the image id.
    /// Labels belong in the context's Dockerfile: the builder caches its steps, while labels given
    /// beside it are steps it runs a throwaway container for at every build.
    pub async fn build_image(
        &self,
        context: BuildContext,
        tag: &str,
        no_cache: bool,
        log: &mut OutputSink,
    ) -> EngineResult<String> {
        let op = format!("build image {tag}");
        let tar = context
            .into_tar()
            .map_err(|e| EngineError::other(&op, e.to_string()))?;
        let options = BuildImageOptions {
            dockerfile: "Dockerfile".to_string(),
            t: tag.to_string(),
            nocache: no_cache,
            rm: true,
            forcerm: true,
            ..Default::default()
        };
        let mut stream = self
            .docker
            .build_image(options, None, Some(Bytes::from(tar)));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| EngineError::from_bollard(&op, e))?;
            if let Some(text) = info.stream {
                log.write(text.as_bytes()).await;
            }
            if let Some(err) = info.error {
                log.write(format!("{err}\n").as_bytes()).await;
                return Err(EngineError::other(&op, err));
            }
        }
        self.image_id(tag)
            .await?
            .ok_or_else(|| EngineError::other(&op, "the build reported success but left no image"))
    }

    /// Imports a root filesystem tarball as `repo:tag` (the engine's `docker import`).
    pub async fn import_rootfs(
        &self,
        rootfs_tar: Bytes,
        repo: &str,
        tag: &str,
        changes: Vec<String>,
    ) -> EngineResult<()> {
        let op = format!("import image {repo}:{tag}");
        let mut stream = std::pin::pin!(self.docker.create_image(
            Some(CreateImageOptions {
                from_src: "-".to_string(),
                repo: repo.to_string(),
                tag: tag.to_string(),
                changes: changes.iter().map(String::as_str).collect(),
                ..Default::default()
            }),
            Some(rootfs_tar),
            None,
        ));
        drain_create_image(&op, &mut stream).await
    }

    /// Images of this instance that no tag names any longer: what a rebuild replaced, or a build
    /// that finished after berth stopped waiting for it.
    pub async fn list_dangling_images(&self) -> EngineResult<Vec<String>> {
        self.list_images(("dangling", "true")).await
    }

    /// This instance's shared images (`berth-img-…`): the build cache.
    pub async fn list_shared_images(&self) -> EngineResult<Vec<String>> {
        self.list_images(("reference", "berth-img-*")).await
    }

    /// Commits a container's files (not its volumes) as `tag`, with this instance's labels and `extra`.
    pub async fn commit(
        &self,
        container: &str,
        tag: &str,
        extra: &[(&str, &str)],
    ) -> EngineResult<String> {
        use bollard::image::CommitContainerOptions;
        let op = format!("commit container {container}");
        let (repo, tag_part) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
        let mut labels = labels::for_instance(&self.instance);
        for (k, v) in extra {
            labels.insert(k.to_string(), v.to_string());
        }
        self.docker
            .commit_container(
                CommitContainerOptions {
                    container: container.to_string(),
                    repo: repo.to_string(),
                    tag: tag_part.to_string(),
                    pause: true,
                    ..Default::default()
                },
                bollard::container::Config::<String> {
                    labels: Some(labels),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| EngineError::from_bollard(&op, e))?;
        self.image_id(tag)
            .await?
            .ok_or_else(|| EngineError::other(&op, "the commit left no image"))
    }

    /// This instance's images that also pass one more engine filter.
    async fn list_images(&self, (filter, value): (&str, &str)) -> EngineResult<Vec<String>> {
        let mut filters = labels::instance_filter(&self.instance);
        filters.insert(filter.into(), vec![value.into()]);
        let list = self
            .docker
            .list_images(Some(ListImagesOptions {
                filters,
                ..Default::default()
            }))
            .await
            .map_err(|e| EngineError::from_bollard("list berth images", e))?;
        Ok(list.into_iter().map(|i| i.id).collect())
    }

    /// Removes an image unless a container still uses it (a shared image stays while any does).
    ///
    /// Removals never prune an image's untagged parents: those are the builder's cached steps, which
    /// images of other distros' package sets and other berth instances on this engine build on, and
    /// pruning them under a build running beside makes it fail.
    pub async fn remove_image_if_unused(&self, reference: &str) -> EngineResult<bool> {
        match self
            .docker
            .remove_image(
                reference,
                Some(RemoveImageOptions {
                    force: false,
                    noprune: true,
                }),
                None,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match EngineError::from_bollard(format!("remove image {reference}"), e) {
                e if e.is_not_found() => Ok(true),
                EngineError::Conflict { .. } => Ok(false),
                e => Err(e),
            },
        }
    }

    /// Removes an image; a missing one is not an error.
    pub async fn remove_image(&self, reference: &str) -> EngineResult<()> {
        match self
            .docker
            .remove_image(
                reference,
                Some(RemoveImageOptions {
                    force: true,
                    noprune: true,
                }),
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match EngineError::from_bollard(format!("remove image {reference}"), e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }
}
