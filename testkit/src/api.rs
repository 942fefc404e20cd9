//! The server's HTTP API as the tests call it: JSON over plain HTTP/1.1, as the admin of the server
//! a URL points at (the token [`crate::Server::start`] read from its banner) or with any token.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use serde_json::Value;

use crate::Server;

/// Admin token of each server started by this test binary, by HTTP address, for [`api`].
static ADMIN: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Note the admin token of the server at `http` (its HTTP address).
pub(crate) fn remember_admin(http: &str, token: &str) {
    ADMIN.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((http.to_owned(), token.to_owned()));
}

fn admin_token_for(url: &str) -> Option<String> {
    let list = ADMIN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    list.iter().rev().find(|(addr, _)| url.contains(&format!("//{addr}/"))).map(|(_, t)| t.clone())
}

/// Plain HTTP/1.1 JSON calls, as the admin of the server at `url`.
pub async fn api(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    api_as(admin_token_for(url).as_deref(), method, url, body).await
}

/// Plain HTTP/1.1 JSON calls with `token` as the bearer (none: no `Authorization`).
pub async fn api_as(token: Option<&str>, method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let client: HttpClient = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    call(&client, token, method, url, body).await.expect("http call")
}

/// An HTTP/1.1 client for [`call`].
pub type HttpClient = Client<HttpConnector, Full<bytes::Bytes>>;

/// Why a [`call`] got no answer.
pub type CallError = Box<dyn std::error::Error + Send + Sync>;

/// One JSON call over `client` with `token` as the bearer (none: no `Authorization`): the status,
/// and the body as JSON (`Null` when empty, a JSON string when it is not JSON).
pub async fn call(
    client: &HttpClient,
    token: Option<&str>,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> Result<(u16, Value), CallError> {
    let mut req = hyper::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let payload = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            bytes::Bytes::from(v.to_string())
        }
        None => bytes::Bytes::new(),
    };
    let resp = client.request(req.body(Full::new(payload))?).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok((status, v))
}

/// Any request with exactly `headers` (no token is added): status, response headers (names in
/// lower case), body as text.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    let (status, headers, bytes) = request_bytes(method, url, headers, body).await;
    (status, headers, String::from_utf8_lossy(&bytes).into_owned())
}

/// `GET url` with exactly `headers`: status, response headers (names in lower case), body bytes.
pub async fn get_bytes(url: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    request_bytes("GET", url, headers, b"").await
}

/// [`request`], with the body as bytes.
pub async fn request_bytes(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let client: HttpClient = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = client
        .request(req.body(Full::new(bytes::Bytes::copy_from_slice(body))).expect("request"))
        .await
        .expect("http call");
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, bytes.to_vec())
}

/// Raw request (for bodies that are not JSON).
pub async fn raw(method: &str, url: &str, content_type: Option<&str>, body: &[u8]) -> (u16, Value) {
    let client: HttpClient = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut req = hyper::Request::builder().method(method).uri(url);
    if let Some(t) = admin_token_for(url) {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = client
        .request(req.body(Full::new(bytes::Bytes::copy_from_slice(body))).expect("request"))
        .await
        .expect("http call");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// `GET url` without credentials: the status, the `content-type` and the body as text (for
/// `/metrics`).
pub async fn get_text(url: &str) -> (u16, String, String) {
    let client: HttpClient = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = hyper::Request::builder().uri(url).body(Full::new(bytes::Bytes::new())).expect("request");
    let resp = client.request(req).await.expect("http call");
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, ct, String::from_utf8_lossy(&bytes).into_owned())
}

/// Map `rc` to `train` as the admin (the train need not be online).
pub async fn set_train(server: &Server, rc: &str, train: &str) {
    let url = server.url(&format!("/api/remote-controls/{rc}/train"));
    let (status, v) = api("PUT", &url, Some(serde_json::json!({"train_id": train}))).await;
    assert_eq!(status, 200, "{v}");
}

/// Create a remote control mapped to `train` (waits until the train is known).
pub async fn remote_control(server: &Server, train: Option<&str>) -> String {
    let (status, rc) = api("POST", &server.url("/api/remote-controls"), Some(serde_json::json!({}))).await;
    assert_eq!(status, 201, "{rc}");
    let id = rc["id"].as_str().expect("id").to_owned();
    if let Some(train) = train {
        wait_for_train(server, train, true).await;
        set_train(server, &id, train).await;
    }
    id
}

/// Wait until `train` is online (or offline), per the API.
pub async fn wait_for_train(server: &Server, train: &str, online: bool) {
    wait_for_train_as(server, admin_token_for(&server.url("/")).as_deref(), train, online).await;
}

/// [`wait_for_train`] asking with `token` (a server started with `--auth-file` has no generated
/// admin token).
pub async fn wait_for_train_as(server: &Server, token: Option<&str>, train: &str, online: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = api_as(token, "GET", &server.url(&format!("/api/trains/{train}")), None).await;
        if status == 200 && v["online"] == online {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "train {train} not online={online} in time: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Write a credentials file for `--auth-file` (re-read by the server on SIGHUP): the server's
/// `auth::CredentialsFile`, which this crate takes as whatever serializes so that it does not link
/// the server.
pub fn write_credentials(path: &Path, file: &impl serde::Serialize) {
    std::fs::write(path, toml::to_string(file).expect("toml")).expect("write credentials");
}

/// The token of client `name` in a credentials file (see [`write_credentials`]).
pub fn client_token(file: &impl serde::Serialize, name: &str) -> String {
    let file = serde_json::to_value(file).expect("credentials as JSON");
    file["clients"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .and_then(|c| c["token"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no token for {name}"))
}

/// Wait until the server lists no WebRTC session (closed ones are removed).
pub async fn wait_no_webrtc_sessions(server: &Server) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = api("GET", &server.url("/api/webrtc/sessions"), None).await;
        if list.as_array().is_some_and(|a| a.is_empty()) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "WebRTC sessions left: {list}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
