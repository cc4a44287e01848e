//! The document against the router and the error type: a route the router serves but the document
//! lacks (or the other way round), an operation without responses, or an error code the document does
//! not list fails here.

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

use super::document;
use super::errors::CODES;
use crate::error::ApiError;

/// The document as clients get it.
fn doc() -> Value {
    serde_json::to_value(document()).unwrap()
}

/// `(path, method, operation)` for every operation of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((path.clone(), method.clone(), op.clone()));
        }
    }
    out
}

/// The router's paths as OpenAPI writes them: axum's `{*rest}` wildcard is a plain `{rest}`.
fn served() -> BTreeSet<String> {
    crate::router::paths()
        .iter()
        .map(|p| p.replace("{*", "{"))
        .collect()
}

#[test]
fn every_route_of_the_router_is_documented_and_nothing_else() {
    let doc = doc();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let missing: Vec<_> = served().difference(&documented).cloned().collect();
    assert!(missing.is_empty(), "served but not documented: {missing:?}");
    let stale: Vec<_> = documented.difference(&served()).cloned().collect();
    assert!(stale.is_empty(), "documented but not served: {stale:?}");
    assert!(served().contains("/openapi.json") && served().contains("/docs"));
}

#[test]
fn every_operation_has_responses_a_summary_a_tag_and_its_own_id() {
    let doc = doc();
    let mut ids = HashSet::new();
    for (path, method, op) in operations(&doc) {
        let responses = op["responses"].as_object().unwrap();
        assert!(
            // A WebSocket's success is its switch of protocols.
            responses.keys().any(|s| s.starts_with('2') || s == "101"),
            "{method} {path} documents no success"
        );
        assert!(
            op["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{method} {path}: no summary"
        );
        assert!(op["tags"][0].is_string(), "{method} {path}: no tag");
        let id = op["operationId"].as_str().unwrap().to_string();
        assert!(ids.insert(id.clone()), "operation id {id} twice");
        for name in path
            .split('{')
            .skip(1)
            .map(|s| s.split('}').next().unwrap())
        {
            let declared = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == name && p["in"] == "path");
            assert!(
                declared,
                "{method} {path}: path parameter {name} undeclared"
            );
        }
    }
}

#[test]
fn errors_have_their_family_shape_and_protected_routes_their_token() {
    let doc = doc();
    for (path, method, op) in operations(&doc) {
        let seed = path.starts_with("/v1/") || path == "/health";
        let public = crate::router::PUBLIC.contains(&path.as_str());
        assert_eq!(
            op["security"].is_null(),
            public,
            "{method} {path}: security"
        );
        if !public {
            assert!(
                op["responses"]["401"].is_object(),
                "{method} {path}: no 401"
            );
        }
        for (status, resp) in op["responses"].as_object().unwrap() {
            if status.as_str() < "400" {
                continue;
            }
            let schema = &resp["content"]["application/json"]["schema"]["$ref"];
            let want = if seed { "Detail" } else { "ApiError" };
            assert_eq!(
                schema.as_str(),
                Some(format!("#/components/schemas/{want}").as_str()),
                "{method} {path} {status}"
            );
            if !seed {
                let code = &resp["content"]["application/json"]["example"]["code"];
                let known = CODES
                    .iter()
                    .any(|c| c.0.to_string() == *status && c.1 == code);
                assert!(
                    known,
                    "{method} {path} {status}: code {code} is not one of its status"
                );
            }
        }
    }
}

#[test]
fn the_documented_codes_are_the_ones_berth_sends() {
    let samples = [
        ApiError::invalid("x"),
        ApiError::not_found("x"),
        ApiError::conflict("x"),
        ApiError::Unauthorized("x".into()),
        ApiError::Forbidden("x".into()),
        ApiError::PayloadTooLarge("x".into()),
        ApiError::RateLimited {
            message: "x".into(),
            retry_after_secs: 1,
        },
        ApiError::Unavailable("x".into()),
        ApiError::Engine("x".into()),
        ApiError::Internal(anyhow::anyhow!("x")),
    ];
    for e in samples {
        let (status, code) = e.status_and_code();
        assert!(
            CODES.iter().any(|c| c.0 == status.as_u16() && c.1 == code),
            "{status} {code} is not documented"
        );
    }
}
