//! berth: a self-hosted container workspace orchestrator.
//!
//! - `config`, `app`, `router`, `server`: start-up and wiring.
//! - `api/`: HTTP handlers per domain (auth, system, workspaces, library, missions, providers, the
//!   OpenCode pass-through, and `v1/` for the seed's CodeTether API), and `api/openapi/`, the
//!   OpenAPI document built from their annotations; nothing else imports them.
//! - `workspaces/`: workspace lifecycle: create, build, init, exec, debug, reconcile.
//! - `engine/`: the Docker engine through bollard: images, containers, volumes, exec, labels.
//! - `catalog`: distros, built-in templates and init-script fragments (data files, validated at start).
//! - `images`: `berth images bootstrap`, base images from a package mirror.
//! - `library/`: the git-backed library of skills, commands, rules, agents, MCP servers, templates.
//! - `opencode/`: the opencode binary, its server API client, one server per workspace.
//! - `missions/`: agent missions: queue, turns, stored events and their stream.
//! - `agents/`: the `/v1` agent API: codebases, runs, the task queue with workers and leases, monitor.
//! - `store/`: SQLite queries per domain. `auth`, `login_throttle`, `secrets`: logins, tokens, secrets
//!   at rest. `principal`: who acts (a user and their role) and what they may act on. `storage`: the
//!   data dir's free space and writes that failed for lack of it.

pub mod agents;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod data_dir_lock;
pub mod e2b;
pub mod engine;
pub mod error;
pub mod firewall;
pub mod gateway;
pub mod images;
pub mod library;
pub mod logging;
pub mod login_throttle;
pub mod metrics;
pub mod missions;
pub mod opencode;
pub mod principal;
pub mod resident;
pub mod router;
pub mod secrets;
pub mod server;
pub mod stats;
pub mod storage;
pub mod store;
pub mod workspaces;
