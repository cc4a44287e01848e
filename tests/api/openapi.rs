//! The API's description as a client meets it: `/openapi.json` and `/docs` without a token, every
//! served path in the document, and every method the document names served (and no other).

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::Server;

/// The methods a route can be documented with; HEAD and OPTIONS follow from GET and CORS, not from
/// the route table.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

#[tokio::test]
async fn openapi_json_and_docs_are_public_and_cover_the_router() {
    let mut s = Server::start().await;
    s.token.clear();

    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "openapi {version}");
    for path in berth::router::paths() {
        let path = path.replace("{*", "{");
        assert!(doc["paths"][&path].is_object(), "{path} is not documented");
    }

    let resp = s
        .client()
        .get(format!("{}/docs", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("<html") && page.contains("/openapi.json"),
        "{page}"
    );
    // Self-contained: the page loads nothing from another host.
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
}

/// Without a token a served method answers anything but 405 (401 behind the token layers, the
/// handler's answer on public routes), and a method the router does not serve answers 405: so the
/// document names exactly the methods each path is served with.
#[tokio::test]
async fn openapi_names_exactly_the_methods_each_path_is_served_with() {
    let mut s = Server::start().await;
    s.token.clear();
    let (_, doc) = s.get("/openapi.json").await;
    let paths = doc["paths"].as_object().expect("paths");
    let mut wrong = Vec::new();
    for (template, item) in paths {
        let path = concrete(template);
        for method in METHODS {
            let documented = item
                .get(method.to_lowercase())
                .is_some_and(Value::is_object);
            let status = s
                .client()
                .request(method.parse().unwrap(), format!("{}{path}", s.url))
                .send()
                .await
                .unwrap()
                .status();
            if documented == (status == StatusCode::METHOD_NOT_ALLOWED) {
                wrong.push(format!(
                    "{method} {template}: documented {documented}, {status}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A path template with each parameter filled in (a library type must be a real one to route alike).
fn concrete(template: &str) -> String {
    template
        .replace("{type}", "skill")
        .split('/')
        .map(|seg| if seg.starts_with('{') { "x" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}
