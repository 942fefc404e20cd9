//! mosquitto's dynamic-security plugin, driven over MQTT: the server (a dynsec admin) creates
//! one broker client and one role per session, whose ACL lets it read only its own topics and
//! publish only its own command (and signaling) topics; deleting the client disconnects it at
//! once. Sans-IO: this file builds the control messages and reads the answers; `broker.rs`
//! sends them.
//!
//! Control topic: `$CONTROL/dynamic-security/v1`, answers on `…/response`, each command's
//! `correlationData` echoed (mosquitto's `plugins/dynamic-security/README.md`).

use serde_json::{json, Value};

use super::topics::{SessionTopics, SignalingTopics};

pub const CONTROL: &str = "$CONTROL/dynamic-security/v1";
pub const RESPONSE: &str = "$CONTROL/dynamic-security/v1/response";

/// The role that lets the server itself publish every session's video and events and read
/// every session's commands and signaling.
pub const SERVER_ROLE: &str = "railcast-server";
/// Session clients and roles are named with this prefix (and nothing else is: a leftover of a
/// previous run is deleted at start-up).
pub const SESSION_PREFIX: &str = "railcast-mq-";

/// One command of a control message.
#[derive(Debug, Clone, PartialEq)]
pub struct Command(pub Value);

impl Command {
    fn new(command: &str, mut fields: Value) -> Self {
        fields["command"] = json!(command);
        Self(fields)
    }
    pub fn name(&self) -> &str {
        self.0["command"].as_str().unwrap_or_default()
    }
}

/// One ACL entry.
fn acl(acltype: &str, topic: &str) -> Value {
    json!({ "acltype": acltype, "topic": topic, "allow": true })
}

/// Deny by default: a client may do only what a role allows (unsubscribing excepted).
pub fn default_deny() -> Command {
    Command::new(
        "setDefaultACLAccess",
        json!({ "acls": [
            { "acltype": "publishClientSend", "allow": false },
            { "acltype": "publishClientReceive", "allow": false },
            { "acltype": "subscribe", "allow": false },
            { "acltype": "unsubscribe", "allow": true },
        ]}),
    )
}

/// The server's own role (see [`SERVER_ROLE`]); "already exists" is fine.
pub fn server_role() -> Vec<Command> {
    let send = ["railcast/v1/rc/#", "device/#"];
    let receive = [super::topics::COMMANDS, "mobile/+/webrtc/+"];
    let mut acls: Vec<Value> = send.iter().map(|t| acl("publishClientSend", t)).collect();
    for t in receive {
        acls.push(acl("publishClientReceive", t));
        acls.push(acl("subscribePattern", t));
    }
    vec![
        Command::new("createRole", json!({ "rolename": SERVER_ROLE, "acls": acls.clone() })),
        // When it existed already, make its ACL what this version needs.
        Command::new("modifyRole", json!({ "rolename": SERVER_ROLE, "acls": acls })),
    ]
}

pub fn add_role(username: &str, role: &str) -> Command {
    Command::new("addClientRole", json!({ "username": username, "rolename": role }))
}

pub fn get_client(username: &str) -> Command {
    Command::new("getClient", json!({ "username": username }))
}

/// The role names of a `getClient` answer.
pub fn client_roles(data: &Value) -> Vec<String> {
    data["client"]["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["rolename"].as_str().map(str::to_owned))
        .collect()
}

pub fn list_clients() -> Command {
    Command::new("listClients", json!({ "verbose": false }))
}

pub fn list_roles() -> Command {
    Command::new("listRoles", json!({ "verbose": false }))
}

/// The names in a `listClients` / `listRoles` answer.
pub fn listed(data: &Value, key: &str) -> Vec<String> {
    data[key].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

/// The broker client and role of session `sid`: may subscribe to and receive its video and
/// events and the server's signaling answers, and publish its commands and signaling offers.
/// Only client id `name` may log in with it.
pub fn create_session(name: &str, password: &str, topics: &SessionTopics, signaling: &SignalingTopics) -> Vec<Command> {
    let mut acls = Vec::new();
    for t in [&topics.video, &topics.events, &signaling.answer, &signaling.server_candidate] {
        acls.push(acl("subscribePattern", t));
        acls.push(acl("publishClientReceive", t));
    }
    for t in [&topics.command, &signaling.offer, &signaling.candidate] {
        acls.push(acl("publishClientSend", t));
    }
    vec![
        Command::new("createRole", json!({ "rolename": name, "acls": acls })),
        Command::new(
            "createClient",
            json!({ "username": name, "password": password, "clientid": name, "roles": [{ "rolename": name }] }),
        ),
    ]
}

/// Delete session `name`'s client (the broker disconnects it at once) and role.
pub fn delete_session(name: &str) -> Vec<Command> {
    vec![delete_client(name), delete_role(name)]
}

pub fn delete_client(name: &str) -> Command {
    Command::new("deleteClient", json!({ "username": name }))
}

pub fn delete_role(name: &str) -> Command {
    Command::new("deleteRole", json!({ "rolename": name }))
}

/// The control message carrying `commands`, each tagged with its correlation id.
pub fn message(commands: &[(String, Command)]) -> Vec<u8> {
    let list: Vec<Value> = commands
        .iter()
        .map(|(id, c)| {
            let mut v = c.0.clone();
            v["correlationData"] = json!(id);
            v
        })
        .collect();
    serde_json::to_vec(&json!({ "commands": list })).unwrap_or_default()
}

/// One answer: its correlation id and its outcome (`data` on success, the broker's error text).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub correlation: String,
    pub outcome: Result<Value, String>,
}

/// The answers of a response message (answers without a correlation id are not ours).
pub fn answers(payload: &[u8]) -> Result<Vec<Answer>, String> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    let list = v["responses"].as_array().ok_or("no `responses` array")?;
    Ok(list
        .iter()
        .filter_map(|r| {
            let correlation = r["correlationData"].as_str()?.to_owned();
            let outcome = match r["error"].as_str() {
                Some(e) => Err(e.to_owned()),
                None => Ok(r.get("data").cloned().unwrap_or(Value::Null)),
            };
            Some(Answer { correlation, outcome })
        })
        .collect())
}

/// Errors that mean the wanted state is already there.
pub fn already_done(command: &str, error: &str) -> bool {
    match command {
        "createRole" | "createClient" => error.contains("already exists"),
        "deleteClient" | "deleteRole" => error.contains("not found"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_may_touch_only_its_own_topics() {
        let t = SessionTopics::new("rc-1", "mq-2");
        let s = SignalingTopics::new("mq-2");
        let cmds = create_session("railcast-mq-2", "pw", &t, &s);
        let acls = cmds[0].0["acls"].as_array().expect("acls");
        let send: Vec<&str> =
            acls.iter().filter(|a| a["acltype"] == "publishClientSend").filter_map(|a| a["topic"].as_str()).collect();
        assert_eq!(send, [t.command.as_str(), &s.offer, &s.candidate]);
        assert!(acls.iter().all(|a| a["allow"] == true && !a["topic"].as_str().unwrap_or("#").contains(['#', '+'])));
        assert_eq!(cmds[1].0["clientid"], "railcast-mq-2");
        assert_eq!(cmds[1].name(), "createClient");
    }

    #[test]
    fn answers_are_read_by_correlation() {
        let msg = message(&[("c1".into(), list_clients())]);
        let v: Value = serde_json::from_slice(&msg).expect("json");
        assert_eq!(v["commands"][0]["correlationData"], "c1");
        assert_eq!(v["commands"][0]["command"], "listClients");
        let got = answers(br#"{"responses":[{"command":"createRole","correlationData":"c1"},{"command":"createRole","error":"Role already exists","correlationData":"c2"},{"command":"listClients","data":{"totalCount":1,"clients":["admin"]},"correlationData":"c3"},{"command":"x"}]}"#).expect("answers");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].outcome, Ok(Value::Null));
        assert_eq!(got[1].outcome, Err("Role already exists".into()));
        assert!(already_done("createRole", "Role already exists"));
        assert_eq!(listed(got[2].outcome.as_ref().expect("ok"), "clients"), ["admin"]);
        assert!(answers(b"nope").is_err());
        assert!(answers(b"{}").is_err());
    }
}
