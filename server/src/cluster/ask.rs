//! Questions every node answers (scatter-gather): a node publishes one request on a subject with
//! its id in the `Railcast-Node` header and a reply inbox, and collects the answers of every
//! other node it knows to be up (from their presence) until all answered or [`ASK_TIMEOUT`].
//! The cluster only carries the bytes: what a question means is the [`Answerer`]'s (the audit's,
//! built by the composition root), so the cluster names no module above it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::{rejected, wire};

/// How long a question waits for the other nodes' answers.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// Questions answered at once; more are not answered (counted): a flood on the subject costs
/// this node a bounded share of its CPU and disk, and the asker lists it in `missing`.
pub const ANSWERING: usize = 4;

/// Answers one question's body (`None`: malformed, counted by the answerer, not answered).
pub type Answerer = Arc<dyn Fn(Bytes) -> BoxFuture<'static, Option<Bytes>> + Send + Sync>;

/// Publish `body` on `subject` and collect the answers, by node, of the nodes in `peers` and of
/// any other node that answers in time; the peers that did not answer come second.
pub async fn ask_all(
    client: &Client,
    node: &str,
    peers: Vec<String>,
    subject: &'static str,
    body: Bytes,
) -> (Vec<(String, Bytes)>, Vec<String>) {
    let mut waiting: HashSet<String> = peers.into_iter().collect();
    if waiting.is_empty() {
        // Nobody else is known to be up (a node that just started hears the others' presence
        // within a second).
        return (Vec::new(), Vec::new());
    }
    let inbox = client.new_inbox();
    let mut sub = match client.subscribe(inbox.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(subject, "cluster: cannot ask the other nodes: {e}");
            return (Vec::new(), waiting.into_iter().collect());
        }
    };
    let headers = wire::from_node_headers(node);
    let published =
        tokio::time::timeout(super::SEND_TIMEOUT, client.publish_with_reply_and_headers(subject, inbox, headers, body))
            .await;
    if !matches!(published, Ok(Ok(()))) {
        return (Vec::new(), waiting.into_iter().collect());
    }
    let mut answered: HashSet<String> = HashSet::new();
    let mut answers = Vec::new();
    let deadline = tokio::time::sleep(ASK_TIMEOUT);
    tokio::pin!(deadline);
    // Until every known peer answered; a node not known yet that answers meanwhile counts too.
    while !waiting.is_empty() {
        tokio::select! {
            m = sub.next() => {
                let Some(m) = m else { break };
                match wire::from_node(m.headers.as_ref()) {
                    Some(from) if from != node && answered.insert(from.clone()) => {
                        waiting.remove(&from);
                        answers.push((from, m.payload));
                    }
                    Some(from) => rejected("ask", subject, &format!("a second answer from {from}")),
                    None => rejected("ask", subject, &"an answer without a Railcast-Node header"),
                }
            }
            () = &mut deadline => break,
        }
    }
    let _ = sub.unsubscribe().await;
    (answers, waiting.into_iter().collect())
}

/// Answer the questions on `subject` until shutdown, with this node's id in the header; this
/// node's own questions are skipped (it answers them itself).
pub async fn answer(
    client: Client,
    node: String,
    subject: &'static str,
    answerer: Answerer,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sub = match client.subscribe(subject).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(subject, "cluster: cannot subscribe, this node's part is missing from every answer: {e}");
            return;
        }
    };
    let answering = Arc::new(tokio::sync::Semaphore::new(ANSWERING));
    loop {
        let msg = tokio::select! {
            m = sub.next() => match m { Some(m) => m, None => return },
            _ = shutdown.changed() => return,
        };
        if wire::from_node(msg.headers.as_ref()).as_deref() == Some(node.as_str()) {
            continue;
        }
        let Some(reply_to) = msg.reply.clone() else {
            rejected("ask", subject, &"a question without a reply subject");
            continue;
        };
        let Ok(permit) = Arc::clone(&answering).try_acquire_owned() else {
            rejected("ask", subject, &format!("{ANSWERING} questions are being answered already"));
            continue;
        };
        let (client, node, answerer) = (client.clone(), node.clone(), Arc::clone(&answerer));
        tokio::spawn(async move {
            let _permit = permit;
            let Some(body) = answerer(msg.payload).await else { return };
            let headers = wire::from_node_headers(&node);
            let sent =
                tokio::time::timeout(super::SEND_TIMEOUT, client.publish_with_headers(reply_to, headers, body)).await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::debug!(subject, "cluster: answer not sent (NATS unreachable)");
            }
        });
    }
}
