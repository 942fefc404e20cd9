//! Every documented endpoint answers per its schema: walk `openapi/openapi.json`, call each
//! operation against a live server (with real ids, then with unknown ids), and check the status is
//! documented and the JSON body matches the documented schema.

use serde_json::{json, Value};
use testkit::ws::Client;
use testkit::{api, remote_control, scratch, Server, Sim, SMALL_VIDEO};

/// Resolve `{"$ref": "#/components/schemas/X"}`.
fn deref<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().expect("ref name");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// A small JSON-schema check covering what utoipa emits: $ref, type (or list of types), required,
/// properties, additionalProperties, items, oneOf/allOf/anyOf.
fn check(doc: &Value, schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    let schema = deref(doc, schema);
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            check(doc, s, v, path)?;
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(any) = schema[key].as_array() {
            if !any.iter().any(|s| check(doc, s, v, path).is_ok()) {
                return Err(format!("{path}: {v} matches none of {key}"));
            }
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() {
        let ok = types.iter().any(|t| match *t {
            "null" => v.is_null(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => false,
        });
        if !ok {
            return Err(format!("{path}: {v} is not of type {types:?}"));
        }
    }
    if let (Some(obj), Some(props)) = (v.as_object(), schema["properties"].as_object()) {
        for req in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !obj.contains_key(req) {
                return Err(format!("{path}: required property {req} missing in {v}"));
            }
        }
        for (k, val) in obj {
            match props.get(k) {
                Some(s) => check(doc, s, val, &format!("{path}.{k}"))?,
                None => return Err(format!("{path}: undocumented property {k}")),
            }
        }
    }
    if let (Some(obj), Some(extra)) = (v.as_object(), schema["additionalProperties"].as_object()) {
        for (k, val) in obj {
            check(doc, &Value::Object(extra.clone()), val, &format!("{path}.{k}"))?;
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, val) in arr.iter().enumerate() {
            check(doc, items, val, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_endpoint_answers_per_its_schema() {
    let doc: Value = serde_json::from_str(&railcast_server::openapi_json()).expect("contract");
    let dir = scratch("contract");
    let server = Server::start(&dir, &[]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let _client = Client::connect(&server.ws_url(&rc)).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let mut calls = 0;
    let paths = doc["paths"].as_object().expect("paths");
    for (path, ops) in paths {
        for (method, op) in ops.as_object().expect("ops") {
            for known in [true, false] {
                if !path.contains('{') && !known {
                    continue;
                }
                // Deleting the mapped remote control would spoil later calls: use a fresh one.
                let id = match (known, path.starts_with("/api/trains")) {
                    (false, _) => "nope".to_owned(),
                    (true, true) => "train-1".to_owned(),
                    (true, false) if method == "delete" && path == "/api/remote-controls/{id}" => {
                        remote_control(&server, None).await
                    }
                    (true, false) => rc.clone(),
                };
                let mut url = server.url(&path.replace("{id}", &id));
                if path == "/ws" {
                    url.push_str(&format!("?remote_control_id={rc}"));
                }
                let body = op["requestBody"]["content"]["application/json"]["schema"]
                    .as_object()
                    .map(|s| deref(&doc, &Value::Object(s.clone()))["example"].clone())
                    .map(|ex| if ex.is_null() { json!({}) } else { ex });
                let body = body.map(|b| if b.get("train_id").is_some() { json!({"train_id": "train-1"}) } else { b });
                let (status, v) = api(&method.to_uppercase(), &url, body).await;
                calls += 1;
                let resp = &op["responses"][status.to_string()];
                assert!(resp.is_object(), "{method} {path} ({id}): status {status} is not documented; body {v}");
                if let Some(schema) = resp["content"]["application/json"]["schema"].as_object() {
                    check(&doc, &Value::Object(schema.clone()), &v, &format!("{method} {path} {status}"))
                        .unwrap_or_else(|e| panic!("{e}"));
                }
                if !known {
                    assert_eq!(status, 404, "{method} {path} with an unknown id: {v}");
                }
                if status >= 400 {
                    check(&doc, &json!({"$ref": "#/components/schemas/ErrorBody"}), &v, path)
                        .unwrap_or_else(|e| panic!("{e}"));
                }
            }
        }
    }
    println!("{calls} calls, all as documented");
    let ops: usize = paths.values().map(|o| o.as_object().map_or(0, |m| m.len())).sum();
    let with_id: usize =
        paths.iter().filter(|(p, _)| p.contains('{')).map(|(_, o)| o.as_object().map_or(0, |m| m.len())).sum();
    assert_eq!(calls, ops + with_id);
    assert!(ops >= 14, "only {ops} operations documented");
    // The Swagger UI is served, offline (vendored).
    let (status, body) = testkit::raw("GET", &server.url("/docs/"), None, b"").await;
    assert_eq!(status, 200, "{body}");
}
