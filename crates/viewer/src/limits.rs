//! Limits on what clients may cost: websocket connections (in all and per
//! address), message sizes and rates, REST body sizes. Every refusal is a
//! clear error and a count in `rm_limit_refused_total{limit=…}`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Deserialize;

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Websocket connections in all.
    pub ws_clients: usize,
    /// Websocket connections from one address (behind a reverse proxy all
    /// come from the proxy's: raise it there).
    pub ws_clients_per_ip: usize,
    /// Largest message a websocket client may send, bytes.
    pub ws_message_bytes: usize,
    /// Messages a websocket client may send per second, sustained; a
    /// `subscribe` (which costs a snapshot) counts as four.
    pub ws_messages_per_s: u32,
    /// Messages a websocket client may send at once before the rate applies.
    pub ws_burst: u32,
    /// Largest REST request body, bytes.
    pub rest_body_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            ws_clients: 5_000,
            ws_clients_per_ip: 64,
            ws_message_bytes: 16 * 1024,
            ws_messages_per_s: 20,
            ws_burst: 40,
            rest_body_bytes: 64 * 1024,
        }
    }
}

impl LimitsConfig {
    /// Refuses limits that would lock every client out.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("ws_clients", self.ws_clients),
            ("ws_clients_per_ip", self.ws_clients_per_ip),
            ("ws_message_bytes", self.ws_message_bytes),
            ("ws_messages_per_s", self.ws_messages_per_s as usize),
            ("rest_body_bytes", self.rest_body_bytes),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("limits.{name} must be at least 1"));
            }
        }
        if self.ws_burst < SUBSCRIBE_COST {
            return Err(format!(
                "limits.ws_burst must be at least {SUBSCRIBE_COST} (one subscribe)"
            ));
        }
        if self.ws_message_bytes < 1024 {
            return Err("limits.ws_message_bytes must be at least 1024".into());
        }
        Ok(())
    }
}

/// What a `subscribe` costs from a client's message budget.
pub const SUBSCRIBE_COST: u32 = 4;

/// Counts a refusal.
pub fn refused(limit: &'static str) {
    metrics::counter!("rm_limit_refused_total", "limit" => limit).increment(1);
}

/// Admits websocket connections within the limits.
#[derive(Debug)]
pub struct Gate {
    limits: LimitsConfig,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Gate {
    /// A gate with these limits.
    pub fn new(limits: LimitsConfig) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// The limits.
    pub fn limits(&self) -> &LimitsConfig {
        &self.limits
    }

    /// A place for one more connection from `ip`, or why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, String> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| "limits unavailable".to_owned())?;
        if open.0 >= self.limits.ws_clients {
            refused("ws_clients");
            return Err(format!(
                "the server holds its limit of {} websocket clients; try again later",
                self.limits.ws_clients
            ));
        }
        let from_ip = open.1.entry(ip).or_default();
        if *from_ip >= self.limits.ws_clients_per_ip {
            refused("ws_clients_per_ip");
            return Err(format!(
                "{ip} already holds {} websocket connections (limits.ws_clients_per_ip)",
                self.limits.ws_clients_per_ip
            ));
        }
        *from_ip += 1;
        open.0 += 1;
        Ok(Ticket {
            gate: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().map_or(0, |o| o.0)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut open) = self.gate.open.lock() {
            open.0 = open.0.saturating_sub(1);
            if let Some(n) = open.1.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.1.remove(&self.ip);
                }
            }
        }
    }
}

/// A token bucket: `rate` per second, at most `burst` saved up.
#[derive(Debug)]
pub struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: Instant::now(),
        }
    }

    /// Takes `cost` if there is that much, at time `now`.
    pub fn take(&mut self, cost: u32, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        let cost = f64::from(cost);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn connections_are_counted_per_address_and_freed_on_drop() {
        let gate = Gate::new(LimitsConfig {
            ws_clients: 3,
            ws_clients_per_ip: 2,
            ..LimitsConfig::default()
        });
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let t1 = gate.admit(a).expect("first");
        let _t2 = gate.admit(a).expect("second");
        assert!(
            gate.admit(a)
                .expect_err("third from a")
                .contains("ws_clients_per_ip")
        );
        let _t3 = gate.admit(b).expect("b");
        assert!(gate.admit(b).expect_err("full").contains("limit of 3"));
        drop(t1);
        assert_eq!(gate.open(), 2);
        assert!(gate.admit(a).is_ok(), "a's place is free again");
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10, 5);
        assert!((0..5).all(|_| b.take(1, t0)));
        assert!(!b.take(1, t0), "burst spent");
        assert!(
            b.take(1, t0 + Duration::from_millis(100)),
            "one more after 0.1 s"
        );
        assert!(!b.take(4, t0 + Duration::from_millis(200)));
        assert!(
            b.take(5, t0 + Duration::from_secs(10)),
            "never more than the burst"
        );
        assert!(!b.take(1, t0 + Duration::from_secs(10)));
    }

    #[test]
    fn limits_that_lock_everyone_out_are_refused() {
        assert!(LimitsConfig::default().check().is_ok());
        let zero = LimitsConfig {
            ws_clients: 0,
            ..LimitsConfig::default()
        };
        assert!(zero.check().expect_err("zero").contains("ws_clients"));
        let small_burst = LimitsConfig {
            ws_burst: 1,
            ..LimitsConfig::default()
        };
        assert!(small_burst.check().is_err());
    }
}
