//! `openapi/openapi.json` is generated from the code; this fails when they differ.
//! Regenerate with `RAILCAST_BLESS=1 cargo test -p railcast-server --test api openapi_drift`.

#[test]
fn committed_contract_matches_code() {
    let generated = railcast_server::openapi_json();
    testkit::committed_matches(
        "openapi/openapi.json",
        &generated,
        "RAILCAST_BLESS=1 cargo test -p railcast-server --test api openapi_drift",
    );
    let v: serde_json::Value = serde_json::from_str(&generated).expect("valid JSON");
    for p in [
        "/api/trains",
        "/api/remote-controls",
        "/api/remote-controls/{id}/train",
        "/api/quic/certificate",
        "/ws",
        "/api/webtransport",
        "/healthz",
    ] {
        assert!(v["paths"][p].is_object(), "{p} missing from the contract");
    }
    assert!(v["components"]["schemas"]["ErrorBody"].is_object());
}

/// Every operation has an id of its own (code generators key on it: two `delete`s would collide).
#[test]
fn operation_ids_are_unique() {
    let v = railcast_server::openapi();
    let mut seen = std::collections::BTreeMap::new();
    for (path, item) in &v.paths.paths {
        let json = serde_json::to_value(item).expect("path item");
        for (method, op) in json.as_object().expect("object") {
            if let Some(id) = op.get("operationId").and_then(|i| i.as_str()) {
                if let Some(first) = seen.insert(id.to_owned(), format!("{method} {path}")) {
                    panic!("operationId {id:?} is used by {first} and by {method} {path}");
                }
            }
        }
    }
    assert!(seen.len() >= 35, "{seen:?}");
}
