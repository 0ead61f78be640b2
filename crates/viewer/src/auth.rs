//! Who may see and do what (DESIGN §8).
//!
//! Access tokens live in the config file as hex SHA-256 digests, one
//! `[[auth.tokens]]` table each, with a name (recorded as the actor of what
//! the holder does), a role and, for `field`, an optional area:
//!
//! | role      | reads                                | acts (ack, remove, incidents, reset) |
//! |-----------|--------------------------------------|--------------------------------------|
//! | `control` | every space                          | every space                          |
//! | `field`   | every space, only inside its area    | nothing                              |
//! | `drill`   | drill spaces                         | drill spaces                         |
//!
//! With no tokens configured the server is open and listens on loopback
//! only (protected mode, enforced by the composition root). With tokens,
//! every request needs one except what the config makes public. The web
//! client's files and `/healthz` never need one: they hold no picture.

use std::net::IpAddr;
use std::sync::Arc;

use fusion::Bbox;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Control room: sees and acts everywhere.
    Control,
    /// Field commander: reads, optionally limited to an area.
    Field,
    /// Exercise staff: sees and acts in drill spaces only.
    Drill,
}

/// One `[[auth.tokens]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Who holds it (the actor in the mission log); unique.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Hex SHA-256 of the token (`printf %s TOKEN | sha256sum`).
    pub sha256: String,
    /// `[west, south, east, north]`: a `field` token sees nothing outside.
    #[serde(default)]
    pub area: Option<[f64; 4]>,
}

/// `[auth]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The tokens. None: open, loopback only.
    pub tokens: Vec<TokenSpec>,
    /// Spaces anyone may read without a token (`live`, `drill-<name>`, or
    /// `drill-*` for every drill). Reading only: acting always needs a token.
    pub public_spaces: Vec<String>,
    /// `/metrics` without a token (a scraper inside the cluster).
    pub public_metrics: bool,
    /// Web origins (`https://host[:port]`) allowed to open websockets
    /// besides the server's own (a client page served elsewhere).
    pub allowed_origins: Vec<String>,
}

/// A token holder's rights.
#[derive(Debug)]
pub struct Grant {
    /// The token's name.
    pub name: Arc<str>,
    /// Its role.
    pub role: Role,
    /// Its area (field tokens).
    pub area: Option<Bbox>,
}

/// What one request may do.
#[derive(Debug, Clone)]
pub enum Access {
    /// No tokens are configured (loopback only): everything.
    Open,
    /// No token: what the config makes public.
    Public(Arc<Public>),
    /// A valid token.
    Token(Arc<Grant>),
}

/// What needs no token.
#[derive(Debug, Default)]
pub struct Public {
    spaces: Vec<String>,
    metrics: bool,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// A token is needed (401).
    NoToken,
    /// The token is not one of ours (401).
    BadToken,
    /// The token's role does not allow this (403).
    Forbidden(String),
}

impl Denied {
    /// A short name for the refusal counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::NoToken => "no_token",
            Denied::BadToken => "bad_token",
            Denied::Forbidden(_) => "forbidden",
        }
    }
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::NoToken => f.write_str(
                "an access token is needed: send `Authorization: Bearer <token>` (websocket: ?token=<token>)",
            ),
            Denied::BadToken => f.write_str("unknown access token"),
            Denied::Forbidden(why) => f.write_str(why),
        }
    }
}

/// The configured tokens and public rights.
#[derive(Debug, Default)]
pub struct Auth {
    tokens: Vec<([u8; 32], Arc<Grant>)>,
    public: Arc<Public>,
    origins: Vec<String>,
}

impl Auth {
    /// Checks and takes the config: digests are 64 hex digits, names unique
    /// and non-empty, areas valid and only on `field` tokens.
    pub fn new(config: &AuthConfig) -> Result<Auth, String> {
        let mut tokens = Vec::new();
        for t in &config.tokens {
            let what = format!("auth.tokens {:?}", t.name);
            if t.name.trim().is_empty() || t.name.len() > 64 {
                return Err("auth.tokens: every token needs a name of 1-64 characters".into());
            }
            if tokens
                .iter()
                .any(|(_, g): &([u8; 32], Arc<Grant>)| *g.name == *t.name)
            {
                return Err(format!("{what}: the name is used twice"));
            }
            let mut digest = [0u8; 32];
            hex::decode_to_slice(t.sha256.trim(), &mut digest).map_err(|_| {
                format!("{what}: sha256 must be 64 hex digits (printf %s TOKEN | sha256sum)")
            })?;
            if tokens.iter().any(|(d, _)| *d == digest) {
                return Err(format!("{what}: the same token is configured twice"));
            }
            let area = match (t.role, t.area) {
                (_, None) => None,
                (Role::Field, Some([w, s, e, n])) => {
                    let b = Bbox::new(w, s, e, n).map_err(|e| format!("{what}: area: {e}"))?;
                    if w > e {
                        return Err(format!("{what}: an area may not cross the antimeridian"));
                    }
                    Some(b)
                }
                (_, Some(_)) => return Err(format!("{what}: only field tokens have an area")),
            };
            tokens.push((
                digest,
                Arc::new(Grant {
                    name: Arc::from(t.name.as_str()),
                    role: t.role,
                    area,
                }),
            ));
        }
        for s in &config.public_spaces {
            if s != "drill-*" && !fusion::space::is_valid_space(s) {
                return Err(format!(
                    "auth.public_spaces: {s:?} is not live, drill-<name> or drill-*"
                ));
            }
        }
        for o in &config.allowed_origins {
            if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/') {
                return Err(format!(
                    "auth.allowed_origins: {o:?} must be scheme://host[:port] without a path"
                ));
            }
        }
        Ok(Auth {
            tokens,
            public: Arc::new(Public {
                spaces: config.public_spaces.clone(),
                metrics: config.public_metrics,
            }),
            origins: config.allowed_origins.clone(),
        })
    }

    /// Whether no tokens are configured (open, loopback only).
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The rights of a request that presents `token` (or none).
    pub fn identify(&self, token: Option<&str>) -> Result<Access, Denied> {
        if self.is_open() {
            return Ok(Access::Open);
        }
        let Some(token) = token else {
            return Ok(Access::Public(self.public.clone()));
        };
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every digest compared in full: the time taken says nothing
        // about how close a guess came.
        let mut found = None;
        for (digest, grant) in &self.tokens {
            let differs = digest
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if differs == 0 {
                found = Some(grant);
            }
        }
        found
            .map(|g| Access::Token(g.clone()))
            .ok_or(Denied::BadToken)
    }

    /// Whether a browser page from `origin` may open a websocket to the
    /// server reached as `host` (the Host header). Same origin is always
    /// allowed, then the configured origins; while open, any loopback page
    /// (the demo on another port).
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        let Some(authority) = authority else {
            return false; // "null" (a file or sandboxed page) and the like
        };
        if host.is_some_and(|h| h.eq_ignore_ascii_case(authority)) {
            return true;
        }
        if self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return true;
        }
        self.is_open() && is_loopback_authority(authority)
    }
}

/// `localhost[:p]`, `127.x.x.x[:p]` or `[::1][:p]`.
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Access {
    /// Who acts, for the logs: the token's name.
    pub fn actor(&self) -> Option<&str> {
        match self {
            Access::Token(g) => Some(&g.name),
            Access::Open | Access::Public(_) => None,
        }
    }

    /// May read `space`; `Some(area)` when only that area may be seen.
    pub fn read(&self, space: &str) -> Result<Option<Bbox>, Denied> {
        match self {
            Access::Open => Ok(None),
            Access::Public(p) => {
                let drill = fusion::space::is_drill(space);
                if p.spaces
                    .iter()
                    .any(|s| s == space || (drill && s == "drill-*"))
                {
                    Ok(None)
                } else {
                    Err(Denied::NoToken)
                }
            }
            Access::Token(g) => match g.role {
                Role::Control => Ok(None),
                Role::Field => Ok(g.area),
                Role::Drill if fusion::space::is_drill(space) => Ok(None),
                Role::Drill => Err(Denied::Forbidden(format!(
                    "token {:?} (role drill) sees drill spaces only",
                    g.name
                ))),
            },
        }
    }

    /// May read the whole of `space` (the mission log, the log's range):
    /// not for a token limited to an area.
    pub fn read_all(&self, space: &str) -> Result<(), Denied> {
        match self.read(space)? {
            None => Ok(()),
            Some(_) => Err(Denied::Forbidden(format!(
                "token {:?} is limited to an area; this covers the whole space",
                self.actor().unwrap_or("")
            ))),
        }
    }

    /// May change `space`'s picture: acknowledge, remove, report
    /// incidents, reset a drill.
    pub fn act(&self, space: &str) -> Result<(), Denied> {
        match self {
            Access::Open => Ok(()),
            Access::Public(_) => Err(Denied::NoToken),
            Access::Token(g) => match g.role {
                Role::Control => Ok(()),
                Role::Drill if fusion::space::is_drill(space) => Ok(()),
                Role::Drill => Err(Denied::Forbidden(format!(
                    "token {:?} (role drill) acts in drill spaces only",
                    g.name
                ))),
                Role::Field => Err(Denied::Forbidden(format!(
                    "token {:?} (role field) may read, not change the picture",
                    g.name
                ))),
            },
        }
    }

    /// May read `/metrics`.
    pub fn metrics(&self) -> Result<(), Denied> {
        match self {
            Access::Open => Ok(()),
            Access::Public(p) if p.metrics => Ok(()),
            Access::Public(_) => Err(Denied::NoToken),
            Access::Token(g) if g.role == Role::Control => Ok(()),
            Access::Token(g) => Err(Denied::Forbidden(format!(
                "token {:?}: metrics are for role control",
                g.name
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    fn spec(name: &str, role: Role, token: &str, area: Option<[f64; 4]>) -> TokenSpec {
        TokenSpec {
            name: name.into(),
            role,
            sha256: digest(token),
            area,
        }
    }

    fn auth() -> Auth {
        Auth::new(&AuthConfig {
            tokens: vec![
                spec("leitstelle", Role::Control, "c-secret", None),
                spec(
                    "elw-1",
                    Role::Field,
                    "f-secret",
                    Some([9.9, 53.5, 10.1, 53.6]),
                ),
                spec("uebung", Role::Drill, "d-secret", None),
            ],
            public_spaces: vec!["drill-*".into()],
            public_metrics: false,
            allowed_origins: vec!["https://lage.example".into()],
        })
        .expect("valid")
    }

    #[test]
    fn roles_read_and_act_where_the_table_says() {
        let a = auth();
        let control = a.identify(Some("c-secret")).expect("known");
        let field = a.identify(Some("f-secret")).expect("known");
        let drill = a.identify(Some("d-secret")).expect("known");
        let public = a.identify(None).expect("public");
        assert_eq!(a.identify(Some("guess")).err(), Some(Denied::BadToken));

        assert_eq!(control.read("live"), Ok(None));
        assert!(control.act("live").is_ok() && control.metrics().is_ok());
        assert_eq!(control.actor(), Some("leitstelle"));

        let area = field.read("live").expect("field reads").expect("limited");
        assert_eq!((area.west, area.north), (9.9, 53.6));
        assert!(matches!(field.act("live"), Err(Denied::Forbidden(_))));
        assert!(matches!(field.read_all("live"), Err(Denied::Forbidden(_))));
        assert!(field.metrics().is_err());

        assert!(drill.read("drill-x").is_ok() && drill.act("drill-x").is_ok());
        assert!(matches!(drill.read("live"), Err(Denied::Forbidden(_))));
        assert!(matches!(drill.act("live"), Err(Denied::Forbidden(_))));

        assert_eq!(public.read("drill-x"), Ok(None), "drill-* is public here");
        assert_eq!(public.read("live"), Err(Denied::NoToken));
        assert_eq!(public.act("drill-x"), Err(Denied::NoToken));
        assert_eq!(public.metrics(), Err(Denied::NoToken));
        assert_eq!(public.actor(), None);
    }

    #[test]
    fn without_tokens_everything_is_open() {
        let a = Auth::new(&AuthConfig::default()).expect("empty");
        assert!(a.is_open());
        let any = a.identify(Some("whatever")).expect("open");
        assert!(any.read("live").is_ok() && any.act("live").is_ok() && any.metrics().is_ok());
    }

    #[test]
    fn origins_same_configured_or_loopback_while_open() {
        let a = auth();
        assert!(a.origin_allowed("http://10.0.0.5:8080", Some("10.0.0.5:8080")));
        assert!(a.origin_allowed("https://lage.example", Some("10.0.0.5:8080")));
        assert!(!a.origin_allowed("https://evil.example", Some("10.0.0.5:8080")));
        assert!(!a.origin_allowed("null", Some("10.0.0.5:8080")));
        assert!(
            !a.origin_allowed("http://localhost:3000", Some("10.0.0.5:8080")),
            "loopback pages only while open"
        );
        let open = Auth::default();
        assert!(open.origin_allowed("http://localhost:3000", Some("127.0.0.1:8080")));
        assert!(open.origin_allowed("http://[::1]:3000", Some("127.0.0.1:8080")));
        assert!(!open.origin_allowed("https://evil.example", Some("127.0.0.1:8080")));
    }

    #[test]
    fn bad_token_tables_are_refused_with_the_reason() {
        let bad = |t: TokenSpec| {
            Auth::new(&AuthConfig {
                tokens: vec![t],
                ..AuthConfig::default()
            })
        };
        let mut short = spec("a", Role::Control, "x", None);
        short.sha256 = "abc".into();
        assert!(bad(short).expect_err("short").contains("64 hex digits"));
        assert!(
            bad(spec("a", Role::Control, "x", Some([9.0, 53.0, 10.0, 54.0])))
                .expect_err("area on control")
                .contains("only field")
        );
        assert!(
            bad(spec("a", Role::Field, "x", Some([9.0, 54.0, 10.0, 53.0])))
                .expect_err("south above north")
                .contains("area")
        );
        assert!(bad(spec("", Role::Field, "x", None)).is_err());
        let twice = Auth::new(&AuthConfig {
            tokens: vec![
                spec("a", Role::Control, "x", None),
                spec("a", Role::Field, "y", None),
            ],
            ..AuthConfig::default()
        });
        assert!(twice.expect_err("dup").contains("twice"));
        let public = Auth::new(&AuthConfig {
            public_spaces: vec!["../etc".into()],
            ..AuthConfig::default()
        });
        assert!(public.is_err());
    }
}
