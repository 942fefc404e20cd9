//! Commands to the train's own systems: an executable run once per command (docs/train-agent.md,
//! "The command hook"). It gets the command type and id as arguments, the command as JSON on
//! standard input and `RAILCAST_*` variables; its exit status and output become the ack.
//!
//! | exit status | ack |
//! |---|---|
//! | 0 | `ok: true`, message: its standard output (first 500 characters) or "done" |
//! | 3 | `ok: false`, "the train does not support <type>" (and its output, if any) |
//! | other, or killed | `ok: false`, "hook failed (…)" and its standard error |
//! | still running after the timeout | killed; `ok: false`, "hook timed out after N ms" |

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use railcast_protocol::control::Command;
use railcast_protocol::CommandAck;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

/// The exit status by which a hook says it does not know the command.
pub const EXIT_UNSUPPORTED: i32 = 3;
/// The most of a hook's output that goes into an ack.
const MAX_MESSAGE: usize = 500;

#[derive(Debug, Clone)]
pub struct Hook {
    path: PathBuf,
    train_id: String,
    timeout: Duration,
    max_running: usize,
    running: Arc<Semaphore>,
}

impl Hook {
    pub fn new(path: PathBuf, train_id: String, timeout: Duration, max_running: usize) -> Self {
        Self { path, train_id, timeout, max_running, running: Arc::new(Semaphore::new(max_running)) }
    }

    /// Run the hook for `cmd`; never fails: every outcome is an ack.
    pub async fn run(&self, cmd: Command) -> CommandAck {
        let command_id = cmd.command_id;
        let kind = command_type(&cmd);
        let ack = |ok: bool, message: String| CommandAck { command_id, ok, message };
        let Ok(_permit) = self.running.clone().try_acquire_owned() else {
            return ack(false, format!("busy: {} commands are still running on the train", self.max_running));
        };
        let started = Instant::now();
        let mut json = serde_json::to_value(&cmd.command).unwrap_or_default();
        if let Some(obj) = json.as_object_mut() {
            obj.insert("command_id".into(), command_id.into());
        }
        let spawned = tokio::process::Command::new(&self.path)
            .arg(&kind)
            .arg(command_id.to_string())
            .env("RAILCAST_TRAIN_ID", &self.train_id)
            .env("RAILCAST_COMMAND_ID", command_id.to_string())
            .env("RAILCAST_COMMAND_TYPE", &kind)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => return ack(false, format!("hook {} cannot run: {e}", self.path.display())),
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A hook that does not read its input is fine: a broken pipe is not an error.
            let _ = stdin.write_all(format!("{json}\n").as_bytes()).await;
        }
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return ack(false, format!("hook failed: {e}")),
            // Dropping the future dropped the child: kill_on_drop killed it.
            Err(_) => {
                tracing::warn!(command_id, kind, "command hook timed out after {:?}", self.timeout);
                return ack(false, format!("hook timed out after {} ms", self.timeout.as_millis()));
            }
        };
        let stdout = clip(&String::from_utf8_lossy(&out.stdout));
        let stderr = clip(&String::from_utf8_lossy(&out.stderr));
        let took = started.elapsed();
        let result = match out.status.code() {
            Some(0) => ack(true, if stdout.is_empty() { "done".into() } else { stdout }),
            Some(EXIT_UNSUPPORTED) => ack(
                false,
                if stdout.is_empty() {
                    format!("the train does not support {kind}")
                } else {
                    format!("the train does not support {kind}: {stdout}")
                },
            ),
            Some(code) => ack(false, failure(&format!("exit status {code}"), &stderr, &stdout)),
            None => ack(false, failure("killed by a signal", &stderr, &stdout)),
        };
        tracing::info!(command_id, kind, ok = result.ok, took_ms = took.as_millis() as u64, "hook: {}", result.message);
        result
    }
}

/// The command's `type` as on the wire (`set_speed`, `operator_lost`, …).
pub fn command_type(cmd: &Command) -> String {
    serde_json::to_value(&cmd.command)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

fn failure(what: &str, stderr: &str, stdout: &str) -> String {
    let detail = if !stderr.is_empty() { stderr } else { stdout };
    if detail.is_empty() {
        format!("hook failed ({what})")
    } else {
        format!("hook failed ({what}): {detail}")
    }
}

fn clip(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_MESSAGE) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}
