//! The websocket protocol (DESIGN §5): subscribe with a viewport, get a
//! snapshot, then one filtered delta per tick. A client that falls behind
//! the broadcast ring is resynced with a fresh snapshot; one that stops
//! reading altogether is dropped after a timeout. A client's role decides
//! what it may see (an area) and do (acknowledge); its messages are
//! limited in size and rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use fusion::{Bbox, Delta, ViewFilter, Viewport};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::auth::Access;
use crate::hub::{Hub, HubError, SpaceHandle};
use crate::limits::{self, Bucket, LimitsConfig, SUBSCRIBE_COST, Ticket};
use crate::message::{AckedMsg, DELTA_HEAD, ErrorMsg, SnapshotMsg};
use crate::viewport::{parse_viewport, within_area};

/// A client that does not take a message within this time is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Refused messages in a row after which a client is disconnected.
const REFUSALS_BEFORE_CLOSE: u32 = 50;

/// A message from a websocket client (DESIGN §5).
#[derive(Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientMsg {
    /// Look at a viewport: a snapshot, then its deltas.
    Subscribe {
        /// `[west, south, east, north]`; none is the whole picture.
        bbox: Option<[f64; 4]>,
        /// H3 resolution of the cells.
        res: Option<u8>,
    },
    /// Acknowledge an alert.
    Ack {
        /// Its id.
        alert: String,
    },
}

/// Parses a client's text message; the error says what was wrong.
pub fn parse_client_message(text: &str) -> Result<ClientMsg, String> {
    let msg: ClientMsg =
        serde_json::from_str(text).map_err(|e| shorten(format!("invalid message: {e}")))?;
    if let ClientMsg::Subscribe { bbox, res } = &msg {
        parse_viewport(*bbox, *res)?;
    }
    if let ClientMsg::Ack { alert } = &msg
        && (alert.is_empty() || alert.len() > 64)
    {
        return Err("an alert id is 1-64 characters".into());
    }
    Ok(msg)
}

/// An error text cut to at most 300 bytes (a parser may quote the input).
fn shorten(mut e: String) -> String {
    if e.len() > 300 {
        let mut end = 297;
        while !e.is_char_boundary(end) {
            end -= 1;
        }
        e.truncate(end);
        e.push_str("...");
    }
    e
}

enum Flow {
    Continue,
    Stop,
}

/// What a connection was admitted with.
pub struct Session {
    /// The pictures.
    pub hub: Arc<Hub>,
    /// The space it looks at.
    pub space: SpaceHandle,
    /// What its token grants.
    pub access: Access,
    /// The area it may see, if its token is limited to one.
    pub area: Option<Bbox>,
    /// Its limits.
    pub limits: LimitsConfig,
    /// Turns true when the server stops.
    pub closing: watch::Receiver<bool>,
    /// Its place among the connections; freed when it ends.
    pub ticket: Ticket,
}

struct Client {
    hub: Arc<Hub>,
    space: SpaceHandle,
    socket: WebSocket,
    filter: Option<ViewFilter>,
    last_seq: u64,
    access: Access,
    area: Option<Bbox>,
    budget: Bucket,
    refusals: u32,
}

/// Serves one websocket connection until it closes.
pub async fn serve(socket: WebSocket, session: Session) {
    metrics::gauge!("rm_ws_clients").increment(1.0);
    let Session {
        hub,
        space,
        access,
        area,
        limits,
        mut closing,
        ticket,
    } = session;
    let mut deltas = space.deltas.subscribe();
    let mut client = Client {
        hub,
        space,
        socket,
        filter: None,
        last_seq: 0,
        access,
        area,
        budget: Bucket::new(limits.ws_messages_per_s, limits.ws_burst),
        refusals: 0,
    };
    loop {
        let flow = tokio::select! {
            () = until_true(&mut closing) => {
                client.close(close_code::AWAY, "server shutting down").await;
                Flow::Stop
            }
            incoming = client.socket.next() => match incoming {
                Some(Ok(Message::Text(text))) => client.on_text(text.as_str()).await,
                Some(Ok(Message::Binary(_))) => client.refuse("binary messages are not supported").await,
                Some(Err(e)) => {
                    // The client broke the protocol (RFC 6455 §7.1.7): say
                    // why, as far as the connection still carries it.
                    let text = e.to_string();
                    let (code, reason) = if text.contains("too long") || text.contains("Space limit") {
                        (close_code::SIZE, "message too big")
                    } else if text.contains("UTF-8") || text.contains("utf-8") {
                        (close_code::INVALID, "text is not UTF-8")
                    } else {
                        (close_code::PROTOCOL, "protocol error")
                    };
                    metrics::counter!("rm_ws_dropped_total", "reason" => reason).increment(1);
                    debug!(error = %text, "websocket protocol error");
                    client.close(code, reason).await;
                    Flow::Stop
                }
                Some(Ok(Message::Close(_))) => {
                    // The protocol layer has queued the closing reply
                    // (RFC 6455 §5.5.1): make sure it leaves.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        futures_util::SinkExt::flush(&mut client.socket),
                    )
                    .await;
                    Flow::Stop
                }
                None => Flow::Stop,
                Some(Ok(_)) => Flow::Continue,
            },
            delta = deltas.recv(), if client.filter.is_some() => match delta {
                Ok(delta) => client.on_delta(&delta).await,
                Err(RecvError::Lagged(missed)) => {
                    metrics::counter!("rm_ws_resyncs_total").increment(1);
                    debug!(missed, "client fell behind; resyncing with a snapshot");
                    client.resync().await
                }
                Err(RecvError::Closed) => Flow::Stop,
            },
        };
        if matches!(flow, Flow::Stop) {
            break;
        }
    }
    drop(ticket);
    metrics::gauge!("rm_ws_clients").decrement(1.0);
}

/// Resolves once `rx` holds true (never, when its sender is gone).
async fn until_true(rx: &mut watch::Receiver<bool>) {
    loop {
        let now = *rx.borrow_and_update();
        if now {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Client {
    async fn on_text(&mut self, text: &str) -> Flow {
        metrics::counter!("rm_ws_client_messages_total").increment(1);
        let msg = match parse_client_message(text) {
            Ok(m) => m,
            Err(e) => {
                metrics::counter!("rm_ws_refused_total", "reason" => "bad_message").increment(1);
                return self.refuse(&e).await;
            }
        };
        let cost = match msg {
            ClientMsg::Subscribe { .. } => SUBSCRIBE_COST,
            ClientMsg::Ack { .. } => 1,
        };
        if !self.budget.take(cost, Instant::now()) {
            limits::refused("ws_message_rate");
            return self
                .refuse("too many messages: slow down (limits.ws_messages_per_s)")
                .await;
        }
        match msg {
            ClientMsg::Subscribe { bbox, res } => match parse_viewport(bbox, res) {
                Ok(vp) => self.subscribe_within(vp).await,
                Err(e) => {
                    metrics::counter!("rm_ws_refused_total", "reason" => "bad_viewport")
                        .increment(1);
                    self.refuse(&e).await
                }
            },
            ClientMsg::Ack { alert } => self.ack(alert).await,
        }
    }

    /// Answers a refused message with an error; a client that goes on
    /// sending only refused messages is disconnected.
    async fn refuse(&mut self, error: &str) -> Flow {
        self.refusals += 1;
        if self.refusals >= REFUSALS_BEFORE_CLOSE {
            metrics::counter!("rm_ws_dropped_total", "reason" => "refused_messages").increment(1);
            self.close(close_code::POLICY, "too many refused messages")
                .await;
            return Flow::Stop;
        }
        self.send_error(error).await
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.socket.send(Message::Close(Some(frame))),
        )
        .await;
    }

    /// Subscribes to the viewport cut to the area the client's role allows.
    async fn subscribe_within(&mut self, vp: Viewport) -> Flow {
        match within_area(vp, self.area) {
            Ok(vp) => {
                self.refusals = 0;
                self.subscribe(vp).await
            }
            Err(e) => self.refuse(&e).await,
        }
    }

    async fn ack(&mut self, alert: String) -> Flow {
        if let Err(e) = self.access.act(&self.space.name) {
            metrics::counter!("rm_auth_refused_total", "reason" => e.reason()).increment(1);
            return self.refuse(&e.to_string()).await;
        }
        self.refusals = 0;
        match self
            .hub
            .ack(&self.space.name, &alert, self.access.actor())
            .await
        {
            Ok(()) => {
                info!(space = %self.space.name, %alert, actor = self.access.actor(), "alert acknowledged");
                self.send_json(&AckedMsg {
                    kind: "acked",
                    alert: &alert,
                })
                .await
            }
            Err(HubError::Closed) => Flow::Stop,
            Err(e) => self.send_error(&e.to_string()).await,
        }
    }

    async fn subscribe(&mut self, vp: Viewport) -> Flow {
        let reply = match self.hub.snapshot(&self.space.name, vp).await {
            Ok(r) => r,
            Err(HubError::Closed) => return Flow::Stop,
            Err(e) => return self.send_error(&e.to_string()).await,
        };
        let served = Viewport {
            bbox: vp.bbox,
            res: fusion::Resolution::try_from(reply.snapshot.res).unwrap_or(vp.res),
        };
        let mut filter = ViewFilter::new(served).limited_to(self.area);
        let mut reply = reply;
        filter.restrict_snapshot(&mut reply.snapshot);
        self.filter = Some(filter);
        self.last_seq = reply.snapshot.seq;
        let text = encode(&SnapshotMsg {
            kind: "snapshot",
            space: &self.space.name,
            drill: self.space.drill,
            snapshot: &reply.snapshot,
            digest: &reply.digest,
            at: None,
        });
        self.send_text(text).await
    }

    async fn resync(&mut self) -> Flow {
        match self.filter.as_ref().map(|f| *f.viewport()) {
            Some(vp) => self.subscribe(vp).await,
            None => Flow::Continue,
        }
    }

    async fn on_delta(&mut self, delta: &Delta) -> Flow {
        if delta.seq <= self.last_seq {
            return Flow::Continue; // already in the snapshot
        }
        if delta.resync {
            // The picture was replaced (a drill reset): what the client
            // holds is void, a fresh snapshot replaces it.
            return self.resync().await;
        }
        let Some(filter) = self.filter.as_mut() else {
            return Flow::Continue;
        };
        // Each item's JSON is written once per delta, for all clients.
        let text = filter.cut(delta).to_json(delta, DELTA_HEAD);
        self.last_seq = delta.seq;
        self.send_text(Some(text)).await
    }

    async fn send_error(&mut self, error: &str) -> Flow {
        self.send_json(&ErrorMsg {
            kind: "error",
            error,
        })
        .await
    }

    async fn send_json<T: serde::Serialize>(&mut self, msg: &T) -> Flow {
        let text = encode(msg);
        self.send_text(text).await
    }

    async fn send_text(&mut self, text: Option<String>) -> Flow {
        let Some(text) = text else {
            return Flow::Continue;
        };
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.send(Message::Text(text.into()))).await
        {
            Ok(Ok(())) => {
                metrics::counter!("rm_ws_messages_sent_total").increment(1);
                Flow::Continue
            }
            Ok(Err(_)) => Flow::Stop,
            Err(_) => {
                metrics::counter!("rm_ws_dropped_total", "reason" => "send_timeout").increment(1);
                info!("dropping a websocket client that stopped reading");
                Flow::Stop
            }
        }
    }
}

/// JSON text of a message; plain structs of strings and numbers always
/// serialise, so `None` only guards against a future non-string map key.
fn encode<T: serde::Serialize>(msg: &T) -> Option<String> {
    serde_json::to_string(msg).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_or_say_why_briefly() {
        assert_eq!(
            parse_client_message(r#"{"type":"ack","alert":"A3"}"#),
            Ok(ClientMsg::Ack { alert: "A3".into() })
        );
        assert!(parse_client_message(r#"{"type":"subscribe","res":16}"#).is_err());
        assert!(parse_client_message(r#"{"type":"subscribe","bbox":[1,2,3]}"#).is_err());
        assert!(parse_client_message(r#"{"type":"ack","alert":""}"#).is_err());
        let long = format!(r#"{{"type":"{}"}}"#, "x".repeat(10_000));
        let e = parse_client_message(&long).expect_err("unknown type");
        assert!(e.len() <= 300 && e.starts_with("invalid message"), "{e}");
    }
}
