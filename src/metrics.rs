//! berth's Prometheus metrics: counters and histograms recorded where things happen (requests, builds,
//! init runs, execs, engine errors, stream subscribers), in one process-wide registry. Gauges that the
//! store already knows (workspaces and tasks by status, running missions, agent servers) are read when
//! `/metrics` is scraped, so they never drift.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Seconds, from a millisecond to an hour: requests, execs and builds all fit.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0,
];

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
    pub builds: HistogramVec,
    pub inits: HistogramVec,
    pub execs: HistogramVec,
    pub engine_errors: IntCounterVec,
    pub sse_subscribers: IntGauge,
    /// Set at scrape time from the store and the runtime.
    pub workspaces: IntGaugeVec,
    pub tasks: IntGaugeVec,
    pub missions_running: IntGauge,
    pub agent_servers: IntGauge,
    pub pool_ready: IntGauge,
    pub pool_claims: IntCounterVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
        labels,
    )
    .expect("valid histogram");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid gauge");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn gauges(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    Metrics {
        http_requests: counter(
            &r,
            "berth_http_requests_total",
            "HTTP requests by route, method and status",
            &["route", "method", "status"],
        ),
        http_seconds: histogram(
            &r,
            "berth_http_request_duration_seconds",
            "HTTP request latency by route and method",
            &["route", "method"],
        ),
        builds: histogram(
            &r,
            "berth_build_duration_seconds",
            "Workspace builds by outcome",
            &["outcome"],
        ),
        inits: histogram(
            &r,
            "berth_init_duration_seconds",
            "Init script runs by outcome",
            &["outcome"],
        ),
        execs: histogram(
            &r,
            "berth_exec_duration_seconds",
            "Execs by outcome (ok, timed_out, error)",
            &["outcome"],
        ),
        engine_errors: counter(
            &r,
            "berth_engine_errors_total",
            "Docker engine failures answered to clients",
            &["kind"],
        ),
        sse_subscribers: gauge(&r, "berth_sse_subscribers", "Open event streams"),
        workspaces: gauges(&r, "berth_workspaces", "Workspaces by status", &["status"]),
        tasks: gauges(&r, "berth_tasks", "Agent tasks by status", &["status"]),
        missions_running: gauge(&r, "berth_missions_running", "Missions with a turn running"),
        agent_servers: gauge(&r, "berth_agent_servers", "OpenCode servers berth runs"),
        pool_ready: gauge(
            &r,
            "berth_pool_ready",
            "Started containers in the warm pool waiting for a create",
        ),
        pool_claims: counter(
            &r,
            "berth_pool_claims_total",
            "Creates that fit the warm pool, by whether a container was ready (hit) or not (miss)",
            &["outcome"],
        ),
        registry: r,
    }
});

pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    pub fn observe_exec(&self, outcome: &str, took: Duration) {
        self.execs
            .with_label_values(&[outcome])
            .observe(took.as_secs_f64());
    }

    /// Everything, in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// Counts an open event stream for as long as it lives.
pub struct Subscriber(());

impl Subscriber {
    pub fn open() -> Self {
        get().sse_subscribers.inc();
        Self(())
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        get().sse_subscribers.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = get();
        m.http_requests
            .with_label_values(&["/api/health", "GET", "200"])
            .inc();
        {
            let _s = Subscriber::open();
            assert!(m.render().contains("berth_sse_subscribers 1"));
        }
        let text = m.render();
        assert!(text.contains(
            "berth_http_requests_total{method=\"GET\",route=\"/api/health\",status=\"200\"} 1"
        ));
        assert!(text.contains("berth_sse_subscribers 0"));
    }
}
