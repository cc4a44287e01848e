//! Integration tests: the real server over HTTP, against the real Docker engine.

mod fake_llm;
mod harness;

mod auth;
mod cli;
mod codebases;
mod codetether;
mod containers;
mod crash;
mod dashboard;
mod disk;
mod e2b;
mod exec;
mod inputs;
mod isolation;
mod library;
mod lifecycle;
mod missions;
mod observability;
mod openapi;
mod pool;
mod reconcile;
mod resident;
mod tenants;
mod workers;
