//! `GET /metrics`: Prometheus text that counts what happened (requests by route class, DDI
//! polls, artifact bytes, actions and rollouts by status), for cross-tenant tokens only.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{random_bytes, Outcome, SimDevice, TestServer};

/// The value of the sample line `name{labels}` (labels in the encoder's order), or 0.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_count_polls_downloads_and_actions_for_cross_tenant_tokens_only() {
    let server = TestServer::start().await;
    let admin = server.mgmt();
    let artifact = random_bytes(12_345, 7);
    let (set, _) = admin.release("fw", "1", "a.swu", artifact.clone()).await;
    let token = admin.device("dev1", &[]).await;
    let device = SimDevice::new(&server.base, "dev1", &token);
    admin
        .ok(
            Method::POST,
            "/rest/v1/targets/dev1/assignedDS",
            Some(json!({ "id": set })),
        )
        .await;
    let handled = device.cycle(Outcome::Succeed, 1).await.unwrap();
    assert!(handled.action_id.is_some());
    device.poll().await.unwrap();

    let client = reqwest::Client::new();
    let get = |token: Option<String>| {
        let mut request = client.get(format!("{}/metrics", server.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let response = get(Some(server.admin.clone())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    assert!(sample(&text, "keel_ddi_polls_total") >= 2.0, "{text}");
    assert_eq!(
        sample(&text, "keel_artifact_bytes_served_total"),
        artifact.len() as f64,
        "{text}"
    );
    assert_eq!(
        sample(&text, "keel_actions{status=\"finished\"}"),
        1.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            "keel_http_requests_total{class=\"ddi\",method=\"GET\",code=\"200\"}"
        ) >= 3.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            "keel_http_requests_total{class=\"mgmt\",method=\"POST\",code=\"201\"}"
        ) >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("keel_http_request_duration_seconds_bucket{le=\"0.0005\",class=\"ddi\"}"),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );

    // A tenant's own viewer token: refused with the reason; no token: 401.
    let viewer = admin.token("v", "viewer").await;
    let response = get(Some(viewer)).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("cross-tenant token"));
    assert_eq!(get(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}
