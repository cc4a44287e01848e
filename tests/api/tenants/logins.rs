//! Failed logins are throttled per client address, whatever the username.

use reqwest::StatusCode;
use serde_json::json;

use super::*;

#[tokio::test]
async fn failed_logins_are_throttled_per_address_whatever_the_username() {
    let t = tenants(Vec::new()).await;
    let s = &t.s;
    let root = login(s, ROOT).await;
    // Twenty at once, each with another username: attempts count when they start, so however slow
    // the hashing, only the free ones (and the first delayed one) are checked; the rest wait.
    let attempts = (0..20).map(|i| async move {
        let resp = s
            .client()
            .post(format!("{}/api/auth/login", s.url))
            .json(&json!({ "username": format!("nobody{i}"), "password": "wrong" }))
            .send()
            .await
            .unwrap();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap();
        (status, retry, body)
    });
    let answers = futures::future::join_all(attempts).await;
    let limited: Vec<_> = answers
        .iter()
        .filter(|(status, ..)| *status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    let refused = answers
        .iter()
        .filter(|(status, ..)| *status == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!((refused, limited.len()), (11, 9), "{answers:?}");
    for (_, retry, body) in limited {
        assert!(retry.is_some_and(|r| (1..=60).contains(&r)), "{retry:?}");
        assert_eq!(body["code"], "rate_limited");
    }
    // The audit log has the checked failures, not the refused flood.
    let (_, v) = s
        .call_as(&root, "GET", "/api/audit?action=login&limit=100", None)
        .await;
    let failed = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "failed")
        .count();
    assert_eq!(failed, 11, "{v}");
}
