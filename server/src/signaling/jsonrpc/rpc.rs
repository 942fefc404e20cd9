//! JSON-RPC 2.0 itself, sans IO: a text message in, its calls (or the error that refuses it
//! whole) out; replies built here. The methods are `super::connection`'s.

use serde_json::{json, Map, Value};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
/// Server errors; `data.code` says which (the REST API's codes).
pub const SERVER_ERROR: i64 = -32000;
pub const RATE_LIMITED: i64 = -32001;
pub const TOO_LARGE: i64 = -32002;

/// Most entries in a batch.
pub const MAX_BATCH: usize = 20;

/// A request's id: a string, a number or null (echoed as it came).
pub type Id = Value;

/// One call of a message: a request (with an id, answered) or a notification (never answered).
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `None`: a notification.
    pub id: Option<Id>,
    pub method: String,
    /// The params object (an absent `params` is an empty object; an array is refused by the
    /// methods with -32602, since they take named params).
    pub params: Value,
}

/// An error reply's body.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    /// For server errors: `{"code": REST code}`.
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }
    /// A server error (-32000) with the REST API's `code`.
    pub fn server(code: &str, message: impl Into<String>) -> Self {
        Self::coded(SERVER_ERROR, code, message)
    }
    pub fn coded(rpc: i64, code: &str, message: impl Into<String>) -> Self {
        Self { code: rpc, message: message.into(), data: Some(json!({ "code": code })) }
    }
    /// The REST code in `data`, if any (metrics label).
    pub fn label(&self) -> String {
        match &self.data {
            Some(d) => d["code"].as_str().unwrap_or("server_error").to_owned(),
            None => match self.code {
                PARSE_ERROR => "parse_error",
                INVALID_REQUEST => "invalid_request",
                METHOD_NOT_FOUND => "method_not_found",
                INVALID_PARAMS => "invalid_params",
                _ => "error",
            }
            .to_owned(),
        }
    }
}

/// A message as read: one call, a batch, or refused whole.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Single(Result<Call, (Id, RpcError)>),
    /// Each entry: a call, or the error for that entry (with the id to answer, null if none).
    Batch(Vec<Result<Call, (Id, RpcError)>>),
    /// Not JSON, or an empty or oversized batch: one error reply with `id: null`.
    Refused(RpcError),
}

/// Read one text message.
pub fn parse(text: &str) -> Incoming {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Incoming::Refused(RpcError::new(PARSE_ERROR, format!("parse error: {e}"))),
    };
    match value {
        Value::Array(items) if items.is_empty() => {
            Incoming::Refused(RpcError::new(INVALID_REQUEST, "invalid request: an empty batch"))
        }
        Value::Array(items) if items.len() > MAX_BATCH => Incoming::Refused(RpcError::new(
            INVALID_REQUEST,
            format!("invalid request: a batch of {} entries (at most {MAX_BATCH})", items.len()),
        )),
        Value::Array(items) => Incoming::Batch(items.into_iter().map(call).collect()),
        other => Incoming::Single(call(other)),
    }
}

/// One request object.
fn call(v: Value) -> Result<Call, (Id, RpcError)> {
    let invalid = |id: Id, why: &str| (id, RpcError::new(INVALID_REQUEST, format!("invalid request: {why}")));
    let Value::Object(mut o) = v else { return Err(invalid(Value::Null, "not an object")) };
    // The id to answer an invalid request with: its own when it is a valid id.
    let id = match o.get("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id.clone()),
        Some(_) => return Err(invalid(Value::Null, "`id` must be a string, a number or null")),
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid(reply_id, "`jsonrpc` must be \"2.0\""));
    }
    let Some(Value::String(method)) = o.remove("method") else {
        return Err(invalid(reply_id, "`method` must be a string"));
    };
    let params = match o.remove("params") {
        None => Value::Object(Map::new()),
        Some(p @ (Value::Object(_) | Value::Array(_))) => p,
        Some(_) => return Err(invalid(reply_id, "`params` must be an object or an array")),
    };
    Ok(Call { id, method, params })
}

/// A success reply.
pub fn result(id: Id, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// An error reply.
pub fn error(id: Id, e: &RpcError) -> Value {
    let mut err = json!({ "code": e.code, "message": e.message });
    if let Some(d) = &e.data {
        err["data"] = d.clone();
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": err })
}

/// A notification from the server.
pub fn notification(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

/// The canonical name of a method (the reference implementation's aliases accepted).
pub fn canonical(method: &str) -> Option<&'static str> {
    Some(match method {
        "announce" | "peer.announce" => "announce",
        "list_peers" | "peer.list" => "list_peers",
        "offer" | "peer.offer" => "offer",
        "answer" | "peer.answer" => "answer",
        "ice_candidate" | "peer.ice_candidate" => "ice_candidate",
        "disconnect" | "peer.disconnect" => "disconnect",
        _ => return None,
    })
}

/// A string param, under its name or an alias.
pub fn str_param<'a>(params: &'a Value, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| params.get(*n)).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(text: &str) -> Result<Call, (Id, RpcError)> {
        match parse(text) {
            Incoming::Single(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requests_and_notifications() {
        let c = single(r#"{"jsonrpc":"2.0","id":7,"method":"peer.list"}"#).expect("call");
        assert_eq!((c.id, c.method.as_str(), c.params), (Some(json!(7)), "peer.list", json!({})));
        let n = single(r#"{"jsonrpc":"2.0","method":"announce","params":{"name":"a"}}"#).expect("call");
        assert_eq!(n.id, None);
        let null_id = single(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#).expect("call");
        assert_eq!(null_id.id, Some(Value::Null));
        assert_eq!(canonical("peer.offer"), Some("offer"));
        assert_eq!(canonical("nope"), None);
    }

    #[test]
    fn every_refusal_has_its_code_and_id() {
        match parse("{not json") {
            Incoming::Refused(e) => assert_eq!(e.code, PARSE_ERROR),
            other => panic!("{other:?}"),
        }
        match parse("[]") {
            Incoming::Refused(e) => assert_eq!(e.code, INVALID_REQUEST),
            other => panic!("{other:?}"),
        }
        let many = format!("[{}]", vec![r#"{"jsonrpc":"2.0","method":"x"}"#; 21].join(","));
        assert!(matches!(parse(&many), Incoming::Refused(e) if e.code == INVALID_REQUEST));
        for (text, id) in [
            (r#"{"id":1,"method":"x"}"#, json!(1)),
            (r#"{"jsonrpc":"1.0","id":"a","method":"x"}"#, json!("a")),
            (r#"{"jsonrpc":"2.0","id":2,"method":5}"#, json!(2)),
            (r#"{"jsonrpc":"2.0","id":3,"method":"x","params":"s"}"#, json!(3)),
            (r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#, Value::Null),
            ("5", Value::Null),
        ] {
            let (got, e) = single(text).expect_err(text);
            assert_eq!((got, e.code), (id, INVALID_REQUEST), "{text}");
        }
        match parse(r#"[1, {"jsonrpc":"2.0","id":1,"method":"x"}]"#) {
            Incoming::Batch(v) => {
                assert!(v[0].is_err());
                assert!(v[1].is_ok());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replies() {
        let e = RpcError::server("forbidden", "no");
        assert_eq!(
            error(json!("x"), &e),
            json!({"jsonrpc":"2.0","id":"x","error":{"code":-32000,"message":"no","data":{"code":"forbidden"}}})
        );
        assert_eq!(e.label(), "forbidden");
        assert_eq!(result(json!(1), json!([])), json!({"jsonrpc":"2.0","id":1,"result":[]}));
        assert_eq!(RpcError::new(METHOD_NOT_FOUND, "x").label(), "method_not_found");
    }
}
