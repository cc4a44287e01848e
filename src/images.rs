//! `berth images bootstrap <distro>`: builds a distro's base image from its package mirror (debootstrap
//! for Debian and Ubuntu, pacstrap for Arch) and imports it under the distro's image name, for hosts that
//! cannot reach a registry.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context};
use bytes::Bytes;
use tokio::process::Command;

use crate::catalog::Distro;
use crate::engine::Engine;

pub struct BootstrapOptions {
    pub mirror: Option<String>,
    pub force: bool,
    pub work_dir: PathBuf,
}

pub async fn bootstrap(
    engine: &Engine,
    distro: &Distro,
    opts: &BootstrapOptions,
) -> anyhow::Result<()> {
    if !opts.force {
        if let Some(id) = engine.image_id(&distro.image).await? {
            println!(
                "{} is already present ({id}); use --force to rebuild it",
                distro.image
            );
            return Ok(());
        }
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("bootstrapping a root filesystem needs root");
    }
    let root = opts.work_dir.join(format!(
        "bootstrap-{}-{}",
        distro.name,
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&root)?;
    let result = async {
        match distro.bootstrap.tool.as_str() {
            "debootstrap" => debootstrap(distro, opts, &root).await?,
            "pacstrap" => pacstrap(distro, &root).await?,
            other => bail!("unknown bootstrap tool {other:?}"),
        }
        println!("packing the root filesystem");
        let tar = pack(&root).await?;
        let (repo, tag) = distro
            .image
            .rsplit_once(':')
            .unwrap_or((&distro.image, "latest"));
        println!("importing {} ({} MiB)", distro.image, tar.len() >> 20);
        engine
            .import_rootfs(
                Bytes::from(tar),
                repo,
                tag,
                vec![
                    r#"CMD ["/bin/bash"]"#.to_string(),
                    "ENV LANG=C.UTF-8".to_string(),
                    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                        .to_string(),
                ],
            )
            .await?;
        Ok(())
    }
    .await;
    if let Err(e) = std::fs::remove_dir_all(&root) {
        eprintln!("warning: could not remove {}: {e}", root.display());
    }
    result?;
    println!("{} is ready", distro.image);
    Ok(())
}

async fn debootstrap(distro: &Distro, opts: &BootstrapOptions, root: &Path) -> anyhow::Result<()> {
    let b = &distro.bootstrap;
    let suite = b
        .suite
        .as_deref()
        .context("the distro's bootstrap names no suite")?;
    let mirror = opts
        .mirror
        .clone()
        .or_else(|| b.mirror.clone())
        .context("the distro's bootstrap names no mirror; pass --mirror")?;
    let mut cmd = Command::new("debootstrap");
    cmd.arg(format!(
        "--variant={}",
        b.variant.as_deref().unwrap_or("minbase")
    ));
    let mut include = distro.packages.clone();
    include.extend(b.packages.iter().cloned());
    if !include.is_empty() {
        cmd.arg(format!("--include={}", include.join(",")));
    }
    if let Some(k) = &b.keyring {
        if Path::new(k).exists() {
            cmd.arg(format!("--keyring={k}"));
        } else {
            bail!("keyring {k} is missing on this host (install the distro's archive keyring package)");
        }
    }
    cmd.arg(suite).arg(root).arg(&mirror);
    println!("debootstrap {suite} from {mirror}");
    run(cmd, "debootstrap (apt-get install debootstrap)").await?;
    // Package caches only make the image bigger.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let _ = Command::new("find")
            .arg(root.join(dir))
            .args(["-type", "f", "-delete"])
            .status()
            .await;
    }
    Ok(())
}

async fn pacstrap(distro: &Distro, root: &Path) -> anyhow::Result<()> {
    let mut cmd = Command::new("pacstrap");
    cmd.arg("-c").arg(root);
    cmd.args(&distro.bootstrap.packages).args(&distro.packages);
    run(cmd, "pacstrap (from arch-install-scripts, on an Arch host)").await
}

async fn run(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .await
        .with_context(|| format!("run {what}"))?;
    if !status.success() {
        bail!("{what} failed: {status}");
    }
    Ok(())
}

async fn pack(root: &Path) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("tar")
        .arg("-C")
        .arg(root)
        .args(["--numeric-owner", "-cf", "-", "."])
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("run tar")?;
    if !out.status.success() {
        bail!("tar failed: {}", out.status);
    }
    Ok(out.stdout)
}
