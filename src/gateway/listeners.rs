//! Where workspaces reach the gateway. A bridge workspace cannot reach the host's loopback, and berth's
//! firewall keeps it from the host's services, so the gateway also answers on each workspace network's
//! gateway address, on one port (`BERTH_GATEWAY_PORT`), which the firewall lets through. Host-network
//! workspaces use berth's own listener on the loopback.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone)]
pub struct Listeners {
    inner: Arc<Inner>,
}

struct Inner {
    port: u16,
    /// The gateway's routes and berth's own listener (for host-network workspaces), once serving:
    /// agents started before (a queue resuming at start-up) wait for them.
    serving: tokio::sync::watch::Sender<Option<(axum::Router, SocketAddr)>>,
    /// Each address served, with what stops its listener.
    bound: Mutex<HashMap<IpAddr, CancellationToken>>,
    /// One bind at a time, so two agent starts never race for an address.
    binding: tokio::sync::Mutex<()>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Listeners {
    pub fn new(port: u16, tracker: TaskTracker, shutdown: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                port,
                serving: tokio::sync::watch::channel(None).0,
                bound: Mutex::new(HashMap::new()),
                binding: tokio::sync::Mutex::new(()),
                tracker,
                shutdown,
            }),
        }
    }

    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// The gateway's routes and berth's own address, once the server has them.
    pub fn ready(&self, app: axum::Router, main: SocketAddr) {
        self.inner.serving.send_replace(Some((app, main)));
    }

    /// The gateway's routes and berth's address, waiting (a little) for berth to serve.
    async fn serving(&self) -> Result<(axum::Router, SocketAddr), String> {
        let mut rx = self.inner.serving.subscribe();
        let serving = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            rx.wait_for(Option::is_some).await.map(|v| v.clone())
        })
        .await;
        match serving {
            Ok(Ok(Some(v))) => Ok(v),
            _ => Err("berth is not serving yet".to_string()),
        }
    }

    /// The gateway's base URL for a host-network workspace.
    pub async fn on_loopback(&self) -> Result<String, String> {
        let (_, main) = self.serving().await?;
        Ok(format!("http://127.0.0.1:{}/llm", main.port()))
    }

    /// The gateway's base URL on `ip` (a workspace network's gateway address), listening there first.
    pub async fn on(&self, ip: IpAddr) -> Result<String, String> {
        let url = format!("http://{ip}:{}/llm", self.inner.port);
        if self.serves(ip) {
            return Ok(url);
        }
        let _turn = self.inner.binding.lock().await;
        if self.serves(ip) {
            return Ok(url);
        }
        let (app, _) = self.serving().await?;
        let listener = tokio::net::TcpListener::bind((ip, self.inner.port))
            .await
            .map_err(|e| {
                format!(
                    "listen on {ip}:{} for the LLM gateway: {e}",
                    self.inner.port
                )
            })?;
        let shutdown = self.inner.shutdown.child_token();
        let stop = shutdown.clone();
        self.inner.tracker.spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            let served = axum::serve(crate::server::without_delay(listener), service)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!(%ip, error = %e, "an LLM gateway listener stopped");
            }
        });
        self.inner
            .bound
            .lock()
            .expect("bound lock")
            .insert(ip, stop);
        tracing::info!(%ip, port = self.inner.port, "LLM gateway listening for a workspace network");
        Ok(url)
    }

    fn serves(&self, ip: IpAddr) -> bool {
        self.inner
            .bound
            .lock()
            .expect("bound lock")
            .contains_key(&ip)
    }

    /// Stops answering on `ip` (its workspace network goes away; the engine may give the address to
    /// another network, perhaps another berth's).
    pub fn release(&self, ip: IpAddr) {
        if let Some(stop) = self.inner.bound.lock().expect("bound lock").remove(&ip) {
            stop.cancel();
        }
    }
}
