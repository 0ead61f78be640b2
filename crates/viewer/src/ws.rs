//! The websocket protocol (DESIGN §5): subscribe with a viewport, get a
//! snapshot, then one filtered delta per tick. A client that falls behind
//! the broadcast ring is resynced with a fresh snapshot; one that stops
//! reading altogether is dropped after a timeout.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use fusion::{Delta, ViewFilter, Viewport};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, info};

use crate::hub::{Hub, HubError, SpaceHandle};
use crate::message::{AckedMsg, DeltaMsg, ErrorMsg, SnapshotMsg};
use crate::viewport::parse_viewport;

/// A client that does not take a message within this time is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message a client may send.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum ClientMsg {
    Subscribe {
        bbox: Option<[f64; 4]>,
        res: Option<u8>,
    },
    Ack {
        alert: String,
    },
}

enum Flow {
    Continue,
    Stop,
}

struct Client {
    hub: Arc<Hub>,
    space: SpaceHandle,
    socket: WebSocket,
    filter: Option<ViewFilter>,
    last_seq: u64,
}

/// Serves one websocket connection until it closes.
pub async fn serve(socket: WebSocket, hub: Arc<Hub>, space: SpaceHandle) {
    metrics::gauge!("rm_ws_clients").increment(1.0);
    let mut deltas = space.deltas.subscribe();
    let mut client = Client {
        hub,
        space,
        socket,
        filter: None,
        last_seq: 0,
    };
    loop {
        let flow = tokio::select! {
            incoming = client.socket.next() => match incoming {
                Some(Ok(Message::Text(text))) => client.on_text(text.as_str()).await,
                Some(Ok(Message::Binary(_))) => client.send_error("binary messages are not supported").await,
                Some(Ok(Message::Close(_)) | Err(_)) | None => Flow::Stop,
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
    metrics::gauge!("rm_ws_clients").decrement(1.0);
}

impl Client {
    async fn on_text(&mut self, text: &str) -> Flow {
        metrics::counter!("rm_ws_client_messages_total").increment(1);
        let msg: ClientMsg = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                metrics::counter!("rm_ws_refused_total", "reason" => "bad_message").increment(1);
                return self.send_error(&format!("invalid message: {e}")).await;
            }
        };
        match msg {
            ClientMsg::Subscribe { bbox, res } => match parse_viewport(bbox, res) {
                Ok(vp) => self.subscribe(vp).await,
                Err(e) => {
                    metrics::counter!("rm_ws_refused_total", "reason" => "bad_viewport")
                        .increment(1);
                    self.send_error(&e).await
                }
            },
            ClientMsg::Ack { alert } => match self.hub.ack(&self.space.name, &alert).await {
                Ok(()) => {
                    info!(space = %self.space.name, %alert, "alert acknowledged");
                    self.send_json(&AckedMsg {
                        kind: "acked",
                        alert: &alert,
                    })
                    .await
                }
                Err(HubError::Closed) => Flow::Stop,
                Err(e) => self.send_error(&e.to_string()).await,
            },
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
        let mut filter = ViewFilter::new(served);
        filter.sent_snapshot(&reply.snapshot.units, &reply.snapshot.sensors);
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
        let mine = filter.filter(delta);
        self.last_seq = delta.seq;
        self.send_json(&DeltaMsg {
            kind: "delta",
            delta: &mine,
        })
        .await
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
