//! The server's one connection to the broker (rumqttc): connects, reconnects with a backoff,
//! subscribes again after each connection (sessions are clean), sends dynamic-security commands
//! and matches their answers, and hands every other incoming message to the route registered for
//! its topic. Publishing never waits: [`Broker::try_publish`] fails when the request queue is
//! full, and the caller keeps its packets in the hub meanwhile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, ClientError, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use super::dynsec::{self, Command};
use super::{Settings, METRICS};

/// Requests (publishes, subscribes, acks) queued for the connection at most.
const REQUESTS: usize = 4096;
/// A dynamic-security command not answered in this long has failed.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// Incoming messages queued per route; beyond it they are dropped and counted.
const ROUTE_QUEUE: usize = 1024;

/// One message from the broker for a route.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub topic: String,
    pub payload: Bytes,
    pub retain: bool,
}

/// Why a broker call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    #[error("the MQTT broker is not connected ({0})")]
    NotConnected(String),
    #[error("the MQTT broker did not answer dynamic-security commands within 5 s (is the plugin loaded and the server's user a dynsec admin?)")]
    NoAnswer,
    #[error("the MQTT broker refused `{command}`: {error}")]
    Refused { command: String, error: String },
    #[error("the MQTT request queue is full")]
    Full,
}

type Pending = HashMap<String, oneshot::Sender<Result<Value, String>>>;

/// The connection, shared by the transport's sessions and the signaling front-end.
#[derive(Debug)]
pub struct Broker {
    client: AsyncClient,
    username: String,
    connected: AtomicBool,
    /// Connected, and the subscriptions and access control of this connection are in place.
    prepared: AtomicBool,
    /// The broker refused a subscription on this connection.
    sub_refused: AtomicBool,
    /// Why it is not connected, for refusals.
    last_error: Mutex<String>,
    /// Bumped on every (re)connection, once its subscriptions and roles are in place.
    ready: watch::Sender<u64>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    /// (topic filter, QoS, where its messages go).
    routes: Mutex<Vec<(String, QoS, mpsc::Sender<Inbound>)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Broker {
    /// A connection to the broker of `settings` (not connected before [`Broker::run`]).
    pub fn new(settings: &Settings) -> Option<(Arc<Self>, EventLoop)> {
        let url = settings.broker.as_ref()?;
        let mut options =
            MqttOptions::new(format!("railcast-server-{:08x}", rand::random::<u32>()), &url.host, url.port);
        options
            .set_keep_alive(Duration::from_secs(15))
            .set_clean_session(true)
            // Client messages are small (the broker's max_packet_size caps them; the transport
            // refuses those over 64 KiB): an oversized packet must not end the event loop.
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_inflight(1024);
        if !url.username.is_empty() {
            options.set_credentials(&url.username, &url.password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, REQUESTS);
        // Events and acks are small: without it Nagle's algorithm holds them behind the
        // broker's delayed ACKs (measured: 40–50 ms per command round trip).
        eventloop.network_options.set_tcp_nodelay(true);
        let broker = Arc::new(Self {
            client,
            username: url.username.clone(),
            connected: AtomicBool::new(false),
            prepared: AtomicBool::new(false),
            sub_refused: AtomicBool::new(false),
            last_error: Mutex::new("not connected yet".into()),
            ready: watch::Sender::new(0),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            routes: Mutex::new(Vec::new()),
        });
        Some((broker, eventloop))
    }

    /// Messages on `filter` go to the returned receiver (subscribed at each connection).
    pub fn route(&self, filter: &str, qos: QoS) -> mpsc::Receiver<Inbound> {
        let (tx, rx) = mpsc::channel(ROUTE_QUEUE);
        lock(&self.routes).push((filter.to_owned(), qos, tx));
        rx
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Why the broker is not usable now, if it is not (not connected, or the connection's
    /// subscriptions not in place yet).
    pub fn unavailable(&self) -> Option<BrokerError> {
        (!self.is_connected() || !self.prepared.load(Ordering::Relaxed))
            .then(|| BrokerError::NotConnected(lock(&self.last_error).clone()))
    }

    /// Changes on each connection made ready.
    pub fn readiness(&self) -> watch::Receiver<u64> {
        self.ready.subscribe()
    }

    /// Queue a publish; never waits. A full queue gives the payload back.
    pub fn try_publish(&self, topic: &str, qos: QoS, payload: Vec<u8>) -> Result<(), Vec<u8>> {
        match self.client.try_publish(topic, qos, false, payload) {
            Ok(()) => Ok(()),
            Err(
                ClientError::TryRequest(rumqttc::Request::Publish(p))
                | ClientError::Request(rumqttc::Request::Publish(p)),
            ) => Err(p.payload.into()),
            Err(_) => Err(Vec::new()),
        }
    }

    /// Queue a publish, waiting for room (events and acks, which must not be lost).
    pub async fn publish(&self, topic: &str, qos: QoS, payload: impl Into<Vec<u8>>) -> Result<(), BrokerError> {
        // The request channel closes only with the connection's event loop (at shutdown).
        self.client
            .publish(topic, qos, false, payload)
            .await
            .map_err(|_| BrokerError::NotConnected("the broker connection has ended".into()))
    }

    /// Run `commands` in one control message; the answers in order (errors the wanted state
    /// makes harmless are successes).
    pub async fn control(&self, commands: Vec<Command>) -> Result<Vec<Value>, BrokerError> {
        if !self.is_connected() {
            return Err(BrokerError::NotConnected(lock(&self.last_error).clone()));
        }
        let mut waits = Vec::with_capacity(commands.len());
        let mut tagged = Vec::with_capacity(commands.len());
        {
            let mut pending = lock(&self.pending);
            for c in commands {
                let id = format!("rc{}", self.next_id.fetch_add(1, Ordering::Relaxed));
                let (tx, rx) = oneshot::channel();
                pending.insert(id.clone(), tx);
                waits.push((c.name().to_owned(), id.clone(), rx));
                tagged.push((id, c));
            }
        }
        let names: Vec<&str> = tagged.iter().map(|(_, c)| c.name()).collect();
        tracing::debug!(?names, first = %tagged.first().map(|(id, _)| id.as_str()).unwrap_or(""), "dynamic-security request");
        let sent = self.publish(dynsec::CONTROL, QoS::AtLeastOnce, dynsec::message(&tagged)).await;
        tracing::debug!(ok = sent.is_ok(), "dynamic-security request queued");
        let mut out = Vec::with_capacity(waits.len());
        let mut failure = sent.err();
        for (command, id, rx) in waits {
            if failure.is_some() {
                lock(&self.pending).remove(&id);
                continue;
            }
            match tokio::time::timeout(CONTROL_TIMEOUT, rx).await {
                Ok(Ok(Ok(v))) => out.push(v),
                Ok(Ok(Err(error))) if dynsec::already_done(&command, &error) => out.push(Value::Null),
                Ok(Ok(Err(error))) => failure = Some(BrokerError::Refused { command, error }),
                Ok(Err(_)) | Err(_) => {
                    lock(&self.pending).remove(&id);
                    failure = Some(BrokerError::NoAnswer);
                }
            }
        }
        match failure {
            Some(e) => {
                METRICS.control_failures.inc();
                Err(e)
            }
            None => Ok(out),
        }
    }

    /// Drive the connection until `stop` turns true and then `done` resolves; reconnects after
    /// any error with a backoff of 0.2 s doubling to 5 s. `eventloop.poll()` is never cancelled
    /// (rumqttc's poll is not cancel-safe: dropping it mid-write breaks the stream): the end comes
    /// as a DISCONNECT request through the client, from a task that waits for `stop` and `done`.
    pub async fn run(
        self: Arc<Self>,
        mut eventloop: EventLoop,
        mut stop: watch::Receiver<bool>,
        done: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let finished = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(tokio::sync::Notify::new());
        {
            let (client, finished, wake) = (self.client.clone(), Arc::clone(&finished), Arc::clone(&wake));
            tokio::spawn(async move {
                crate::stopped(&mut stop).await;
                done.await;
                finished.store(true, Ordering::Release);
                wake.notify_one();
                let _ = client.disconnect().await;
            });
        }
        let mut backoff = Duration::from_millis(200);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(200);
                    self.connected.store(true, Ordering::Relaxed);
                    self.sub_refused.store(false, Ordering::Relaxed);
                    METRICS.connected.set(1);
                    METRICS.connects.inc();
                    tracing::info!("connected to the MQTT broker");
                    tokio::spawn(Arc::clone(&self).prepare());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => self.dispatch(p),
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) {
                        self.sub_refused.store(true, Ordering::Relaxed);
                        tracing::warn!(
                            "the MQTT broker refused a subscription of the server: its user lacks the role {} \
                             (given next, on a first start)",
                            dynsec::SERVER_ROLE
                        );
                    }
                }
                // The DISCONNECT is written: the end.
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    let was = self.connected.swap(false, Ordering::Relaxed);
                    self.prepared.store(false, Ordering::Relaxed);
                    METRICS.connected.set(0);
                    *lock(&self.last_error) = e.to_string();
                    // Dynamic-security answers will not come on this connection.
                    lock(&self.pending).clear();
                    if finished.load(Ordering::Acquire) {
                        break;
                    }
                    if was {
                        tracing::warn!("lost the MQTT broker: {e}; reconnecting");
                    } else {
                        tracing::debug!("MQTT broker connection failed: {e}; retrying in {backoff:?}");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = wake.notified() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        self.connected.store(false, Ordering::Relaxed);
        METRICS.connected.set(0);
    }

    /// After a connection: the subscriptions first (commands published before them are lost:
    /// MQTT keeps nothing for a topic nobody subscribes to), then the deny-by-default ACL and the
    /// server's own role. On the very first connection the role is missing and the route
    /// subscriptions are refused; giving the role makes the broker disconnect the server, and the
    /// next connection subscribes with it.
    async fn prepare(self: Arc<Self>) {
        let mut filters = vec![(dynsec::RESPONSE.to_owned(), QoS::AtLeastOnce)];
        filters.extend(lock(&self.routes).iter().map(|(f, q, _)| (f.clone(), *q)));
        for (filter, qos) in filters {
            if let Err(e) = self.client.subscribe(filter.clone(), qos).await {
                tracing::error!(filter, "cannot subscribe: {e}");
                return;
            }
        }
        let mut commands = vec![dynsec::default_deny()];
        commands.extend(dynsec::server_role());
        if let Err(e) = self.control(commands).await {
            tracing::error!("cannot set up the broker's access control: {e}");
            *lock(&self.last_error) = e.to_string();
            return;
        }
        if !self.username.is_empty() {
            let has = match self.control(vec![dynsec::get_client(&self.username)]).await {
                Ok(v) => dynsec::client_roles(&v[0]).iter().any(|r| r == dynsec::SERVER_ROLE),
                Err(e) => {
                    tracing::error!("cannot read the server's broker client: {e}");
                    false
                }
            };
            if !has {
                // The broker disconnects a client whose roles change; the next connection has it.
                match self.control(vec![dynsec::add_role(&self.username, dynsec::SERVER_ROLE)]).await {
                    Ok(_) => tracing::info!(
                        "gave the server's broker user the role {}; reconnecting with it",
                        dynsec::SERVER_ROLE
                    ),
                    Err(e) => tracing::error!("cannot give the server its broker role: {e}"),
                }
                return;
            }
        }
        if self.sub_refused.load(Ordering::Relaxed) {
            // Its answer came before the dynamic-security answers above (one connection, in order).
            let why = format!(
                "the broker refused a subscription of the server although it has the role {}",
                dynsec::SERVER_ROLE
            );
            tracing::error!("{why}; MQTT sessions are refused until the next connection");
            *lock(&self.last_error) = why;
            return;
        }
        tracing::debug!("MQTT subscriptions and access control in place");
        self.prepared.store(true, Ordering::Relaxed);
        self.ready.send_modify(|n| *n += 1);
    }

    /// Hand one incoming message to the waiter of its answer or to its route.
    fn dispatch(&self, p: rumqttc::Publish) {
        let topic = p.topic.clone();
        if topic == dynsec::RESPONSE {
            match dynsec::answers(&p.payload) {
                Ok(answers) => {
                    tracing::debug!(n = answers.len(), first = %answers.first().map(|a| a.correlation.as_str()).unwrap_or(""), "dynamic-security answers");
                    let mut pending = lock(&self.pending);
                    for a in answers {
                        if let Some(tx) = pending.remove(&a.correlation) {
                            let _ = tx.send(a.outcome);
                        }
                    }
                }
                Err(e) => tracing::warn!("unreadable dynamic-security answer: {e}"),
            }
            return;
        }
        let routes = lock(&self.routes);
        let Some((_, _, tx)) = routes.iter().find(|(f, _, _)| matches(f, &topic)) else {
            tracing::debug!(topic, "MQTT message on a topic nobody reads");
            return;
        };
        let msg = Inbound { topic, payload: p.payload, retain: p.retain };
        if tx.try_send(msg).is_err() {
            METRICS.dropped_in.inc();
        }
    }
}

/// Whether `topic` matches the filter `filter` (`+` one level, `#` the rest).
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match (f, t.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(level)) if f == level => {}
            _ => return false,
        }
    }
    t.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn filters() {
        assert!(matches("railcast/v1/rc/+/+/command", "railcast/v1/rc/a/b/command"));
        assert!(!matches("railcast/v1/rc/+/+/command", "railcast/v1/rc/a/command"));
        assert!(!matches("railcast/v1/rc/+/+/command", "railcast/v1/rc/a/b/c/command"));
        assert!(matches("mobile/+/webrtc/+", "mobile/x/webrtc/offer"));
        assert!(matches("a/#", "a/b/c"));
        assert!(!matches("a/b", "a/b/c"));
    }
}
