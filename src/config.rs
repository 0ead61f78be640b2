//! The configuration file (TOML). Every field has a named default, unknown
//! fields are refused, and `deploy/rescuemate.toml` is a tested example.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use fusion::{
    Catalogue, KindSpec, PictureConfig, Resolution, Sector, SourceConfig, StatusMeaning,
    StatusTable,
};
use ingest::{Formats, FormatsConfig};
use serde::Deserialize;

/// Default HTTP address (loopback: see protected mode in the README).
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
/// Default address of the embedded broker.
pub const DEFAULT_EMBEDDED_BROKER: &str = "127.0.0.1:1883";

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP server.
    pub http: HttpConfig,
    /// MQTT connection.
    pub mqtt: MqttConfig,
    /// Fusion engine.
    pub fusion: FusionConfig,
    /// Sensor kinds; replaces the built-in Hamburg catalogue when given.
    pub kinds: Option<BTreeMap<String, KindSpec>>,
    /// Radio status meanings by status number ("0"–"9"); each entry
    /// replaces the built-in (German FMS) meaning of that status.
    pub status: BTreeMap<String, StatusMeaning>,
    /// Sectors that must keep an available unit of given types.
    pub sectors: Vec<Sector>,
    /// Unit types an incident keyword requires available in its area.
    pub requirements: BTreeMap<String, Vec<String>>,
    /// Several sources per unit: accuracies, plausible speeds, identities,
    /// who may set a radio status.
    pub sources: SourceConfig,
    /// Foreign formats (SenML, CoT, CAP, SensorThings): topic patterns and
    /// mapping tables.
    pub formats: FormatsConfig,
    /// The event log.
    pub log: LogSection,
    /// Access tokens, public spaces, allowed web origins.
    pub auth: viewer::auth::AuthConfig,
    /// What clients may cost.
    pub limits: viewer::limits::LimitsConfig,
    /// Scale-out: regions, their shards, the shards' publications.
    pub shard: ShardSection,
    /// This server's shard and the number of shards (`serve --shard I/N`);
    /// not in the file.
    #[serde(skip)]
    pub shard_role: Option<(u32, u32)>,
}

/// `[shard]`: how the picture is split over fusion shards (`serve --shard
/// I/N`) and merged again by gateways (`gateway --shards N`), DESIGN §7.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardSection {
    /// H3 resolution of the regions (3: about 12,000 km² each).
    pub res: u8,
    /// Only regions meeting this bbox `[w, s, e, n]` are subscribed to;
    /// unset: the whole world (resolutions up to 3 only).
    pub area: Option<[f64; 4]>,
    /// Regions given to a shard explicitly (H3 index = shard number);
    /// every other region goes to the shard its index hashes to.
    pub assign: BTreeMap<String, u32>,
    /// A shard publishes its whole picture (retained) this often, besides
    /// when it starts and when a gateway asks, milliseconds.
    pub full_every_ms: u64,
}

impl Default for ShardSection {
    fn default() -> Self {
        Self {
            res: 3,
            area: None,
            assign: BTreeMap::new(),
            full_every_ms: 30_000,
        }
    }
}

impl ShardSection {
    /// The region map for `shards` shards.
    pub fn map(&self, shards: u32) -> anyhow::Result<fusion::RegionMap> {
        let res = Resolution::try_from(self.res)
            .map_err(|_| anyhow::anyhow!("shard.res: {} is not 0..=15", self.res))?;
        let mut assign = BTreeMap::new();
        for (k, v) in &self.assign {
            let cell: fusion::CellIndex = k
                .parse()
                .map_err(|_| anyhow::anyhow!("shard.assign: {k:?} is not an H3 cell index"))?;
            assign.insert(cell, *v);
        }
        fusion::RegionMap::new(res, shards, assign).map_err(|e| anyhow::anyhow!("[shard]: {e}"))
    }

    /// The bbox of `area`, checked.
    pub fn area(&self) -> anyhow::Result<Option<fusion::Bbox>> {
        self.area
            .map(|[w, s, e, n]| {
                fusion::Bbox::new(w, s, e, n).map_err(|e| anyhow::anyhow!("shard.area: {e}"))
            })
            .transpose()
    }
}

/// `[log]`: the event log (Arrow IPC segments, one folder per space).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// The data folder (`--data` overrides it). Unset: no log, and a
    /// restarted server starts with an empty picture.
    pub dir: Option<PathBuf>,
    /// A segment is closed at this size, bytes.
    pub segment_bytes: u64,
    /// A segment is closed at this age, milliseconds.
    pub segment_ms: i64,
    /// Wait for the disk after every batch (survives a power cut; costs a
    /// disk round trip per batch). Without it a batch is in the operating
    /// system's hands, which survives the process being killed.
    pub fsync: bool,
    /// Segments that ended longer ago than this are deleted (at the next
    /// rotation, and only up to a checkpoint), milliseconds; 0 keeps
    /// everything. The log holds vehicle positions and call signs.
    pub retention_ms: i64,
}

/// Default retention of the event log: 30 days.
pub const DEFAULT_LOG_RETENTION_MS: i64 = 30 * 24 * 3_600_000;

impl Default for LogSection {
    fn default() -> Self {
        let d = ingest::log::LogConfig::new("");
        Self {
            dir: None,
            segment_bytes: d.segment_bytes,
            segment_ms: d.segment_ms,
            fsync: d.fsync,
            retention_ms: DEFAULT_LOG_RETENTION_MS,
        }
    }
}

impl LogSection {
    /// The writer's settings, when a data folder is set.
    pub fn writer(&self) -> Option<ingest::log::LogConfig> {
        self.dir.as_ref().map(|dir| ingest::log::LogConfig {
            dir: dir.clone(),
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            fsync: self.fsync,
        })
    }
}

/// `[http]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Deltas buffered per space for slow websocket clients before they are
    /// resynced with a snapshot.
    pub ws_ring: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: parse_addr(DEFAULT_HTTP),
            ws_ring: 256,
        }
    }
}

/// `[mqtt]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// External broker, `mqtt://[user:pass@]host[:port]`. When unset, the
    /// embedded broker runs.
    pub url: Option<String>,
    /// Listen address of the embedded broker.
    pub embedded: SocketAddr,
    /// Client id of the ingest session (persistent: keep it stable).
    pub client_id: String,
    /// Accepted events buffered between ingest and fusion.
    pub queue: usize,
    /// How far in the future an event time may be, milliseconds.
    pub future_tolerance_ms: i64,
    /// MQTT protocol version of the ingest session: 4 (3.1.1) or 5.
    pub version: u8,
    /// MQTT 5 shared-subscription group: several servers with the same
    /// group share the messages (each message goes to one of them).
    pub share_group: Option<String>,
    /// For `mqtts://`: trust the CA certificates (PEM) in this file instead
    /// of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Users of the embedded broker (name = password). Empty: anonymous,
    /// and the embedded broker may only listen on loopback.
    pub embedded_users: BTreeMap<String, String>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: None,
            embedded: parse_addr(DEFAULT_EMBEDDED_BROKER),
            client_id: "rescuemate-ingest".into(),
            queue: 10_000,
            future_tolerance_ms: 30_000,
            version: 4,
            share_group: None,
            ca_file: None,
            embedded_users: BTreeMap::new(),
        }
    }
}

/// `[fusion]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FusionConfig {
    /// Delta interval, milliseconds.
    pub tick_ms: u64,
    /// Delta frames per second, all websocket clients together, up to
    /// which a delta goes out every tick; beyond, every few ticks (up to
    /// `max_tick_ms`). 0: every tick, however many clients watch.
    pub frames_per_s: u32,
    /// The longest interval between deltas that `frames_per_s` stretches
    /// the tick to, milliseconds.
    pub max_tick_ms: u64,
    /// Served H3 resolutions; the finest indexes entities.
    pub resolutions: Vec<u8>,
    /// Time-to-live of a unit's newest report, milliseconds.
    pub unit_ttl_ms: i64,
    /// A unit in a status that expects reports, silent for longer than
    /// this, is flagged, milliseconds.
    pub silent_after_ms: i64,
    /// Most finest-resolution cells one incident area may cover; larger
    /// areas are refused with a reason.
    pub max_incident_cells: usize,
    /// How long an entity that stopped reporting stays in the picture,
    /// marked lost, before it is removed, milliseconds.
    pub retention_ms: i64,
    /// Most units, sensors and incidents held together; new ids beyond
    /// are refused with a `capacity` alert.
    pub max_entities: usize,
}

impl Default for FusionConfig {
    fn default() -> Self {
        Self {
            tick_ms: 50,
            frames_per_s: 10_000,
            max_tick_ms: 200,
            resolutions: vec![10, 9, 8, 7, 6],
            unit_ttl_ms: 5 * 60_000,
            silent_after_ms: 10 * 60_000,
            max_incident_cells: 200_000,
            retention_ms: 6 * 3_600_000,
            max_entities: 1_000_000,
        }
    }
}

fn parse_addr(s: &str) -> SocketAddr {
    match s.parse() {
        Ok(a) => a,
        Err(_) => unreachable!("constant address {s} is valid"),
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.picture()?;
        if config.fusion.tick_ms == 0 || config.fusion.tick_ms > 10_000 {
            bail!("fusion.tick_ms must be 1..=10000");
        }
        if config.fusion.max_tick_ms < config.fusion.tick_ms || config.fusion.max_tick_ms > 60_000 {
            bail!("fusion.max_tick_ms must be at least fusion.tick_ms and at most 60000");
        }
        if config.log.segment_bytes < 64 * 1024 {
            bail!("log.segment_bytes must be at least 65536");
        }
        if config.log.segment_ms < 1_000 {
            bail!("log.segment_ms must be at least 1000");
        }
        if config.log.retention_ms < 0 {
            bail!("log.retention_ms must be 0 (keep everything) or more");
        }
        for (user, password) in &config.mqtt.embedded_users {
            if user.is_empty() || password.len() < 8 || user.len() > 64 || password.len() > 64 {
                bail!("mqtt.embedded_users.{user}: names of 1-64 characters, passwords of 8-64");
            }
        }
        if config.fusion.max_entities == 0 {
            bail!("fusion.max_entities must be at least 1");
        }
        if config.mqtt.queue == 0 {
            bail!("mqtt.queue must be at least 1");
        }
        config.formats()?;
        viewer::auth::Auth::new(&config.auth).map_err(|e| anyhow::anyhow!(e))?;
        config.limits.check().map_err(|e| anyhow::anyhow!(e))?;
        config.shard.map(u32::MAX)?;
        config.shard.area()?;
        if config.shard.full_every_ms < 1_000 {
            bail!("shard.full_every_ms must be at least 1000");
        }
        if !matches!(config.mqtt.version, 4 | 5) {
            bail!("mqtt.version must be 4 (MQTT 3.1.1) or 5");
        }
        if let Some(g) = &config.mqtt.share_group {
            if config.mqtt.version != 5 {
                bail!("mqtt.share_group needs mqtt.version = 5");
            }
            if g.is_empty() || g.contains(['/', '+', '#']) {
                bail!("mqtt.share_group {g:?}: a non-empty name without '/', '+' or '#'");
            }
        }
        Ok(config)
    }

    /// The foreign formats, checked.
    pub fn formats(&self) -> anyhow::Result<Formats> {
        Formats::new(&self.formats).map_err(|e| anyhow::anyhow!(e))
    }

    /// The tick interval.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.fusion.tick_ms)
    }

    /// The engine settings.
    pub fn picture(&self) -> anyhow::Result<PictureConfig> {
        let mut resolutions = Vec::new();
        for r in &self.fusion.resolutions {
            resolutions.push(
                Resolution::try_from(*r)
                    .map_err(|_| anyhow::anyhow!("fusion.resolutions: {r} is not 0..=15"))?,
            );
        }
        if resolutions.is_empty() {
            bail!("fusion.resolutions must name at least one resolution");
        }
        let mut status_table = StatusTable::default();
        for (key, meaning) in &self.status {
            let n: u8 = key
                .parse()
                .ok()
                .filter(|n| *n <= 9)
                .ok_or_else(|| anyhow::anyhow!("status.{key}: radio statuses are 0..=9"))?;
            status_table.set(n, meaning.clone());
        }
        let s = &self.sources;
        let positive = |what: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "sources.{what} must be a positive number, got {v}"
                ))
            }
        };
        for (k, v) in &s.accuracy_m {
            positive(&format!("accuracy_m.{k}"), *v)?;
        }
        for (k, v) in &s.max_speed_mps {
            positive(&format!("max_speed_mps.{k}"), *v)?;
        }
        positive("default_accuracy_m", s.default_accuracy_m)?;
        positive("default_max_speed_mps", s.default_max_speed_mps)?;
        if !(s.drift_mps.is_finite() && s.drift_mps >= 0.0) {
            bail!(
                "sources.drift_mps must be zero or more, got {}",
                s.drift_mps
            );
        }
        let picture = PictureConfig {
            sources: self.sources.clone(),
            sectors: self.sectors.clone(),
            requirements: self.requirements.clone(),
            status_table,
            silent_after_ms: self.fusion.silent_after_ms,
            max_incident_cells: self.fusion.max_incident_cells,
            retention_ms: self.fusion.retention_ms,
            max_entities: self.fusion.max_entities,
            shard: None,
            resolutions,
            future_tolerance_ms: self.mqtt.future_tolerance_ms,
            unit_ttl_ms: self.fusion.unit_ttl_ms,
            catalogue: self
                .kinds
                .clone()
                .map_or_else(Catalogue::default, Catalogue::new),
        };
        picture.check().map_err(|e| anyhow::anyhow!(e))?;
        Ok(picture)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_config_parses() {
        // deploy/lint.sh keeps the Kubernetes ConfigMap equal to this file.
        let c = Config::parse(include_str!("../deploy/compose.toml"))
            .expect("deploy/compose.toml is valid");
        assert_eq!(c.http.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.auth.tokens.len(), 2);
        assert!(c.log.dir.is_some());
        viewer::auth::Auth::new(&c.auth).expect("its tokens are valid");
    }

    #[test]
    fn shard_settings_are_checked() {
        let c = Config::parse(
            "[shard]\nres = 8\narea = [9.7, 53.4, 10.3, 53.7]\n[shard.assign]\n\"881f15ae87fffff\" = 1\n",
        )
        .expect("valid");
        let map = c.shard.map(2).expect("two shards");
        assert_eq!(u8::from(map.res()), 8);
        assert!(c.shard.map(1).is_err(), "shard 1 of 1 does not exist");
        assert!(Config::parse("[shard]\nres = 16\n").is_err());
        assert!(Config::parse("[shard.assign]\nhamburg = 0\n").is_err());
        assert!(Config::parse("[shard]\narea = [9.0, 54.0, 10.0, 53.0]\n").is_err());
        assert!(Config::parse("[shard]\nfull_every_ms = 10\n").is_err());
    }

    #[test]
    fn the_deploy_example_parses() {
        let text = include_str!("../deploy/rescuemate.toml");
        let c = Config::parse(text).expect("deploy/rescuemate.toml is valid");
        assert_eq!(c.fusion.tick_ms, 50);
        assert_eq!(c.log.segment_ms, 3_600_000);
        assert!(c.log.dir.is_none(), "no log unless asked for");
        assert_eq!(c.log.retention_ms, DEFAULT_LOG_RETENTION_MS);
        assert!(c.auth.tokens.is_empty(), "the example configures no token");
        assert_eq!(c.limits.ws_clients_per_ip, 64);
        assert_eq!(c.fusion.max_entities, 1_000_000);
        assert_eq!(c.shard.res, 3);
        assert!(c.shard.area.is_none() && c.shard.assign.is_empty());
        assert!(c.mqtt.embedded_users.is_empty());
        assert_eq!(c.sectors.len(), 1);
        assert_eq!(c.requirements["FEU3"], ["HLF", "DLK"]);
        let f = c.formats().expect("formats");
        assert_eq!(f.routes.len(), 4);
        assert_eq!(f.datastreams["4711"].sensor, "pegel-st-pauli");
        assert_eq!(
            f.cot_type("a-f-G-U-i-m-aar").map(|t| t.unit_type.as_str()),
            Some("RTH")
        );
        assert!(
            c.kinds
                .expect("the example lists kinds")
                .contains_key("water_level")
        );
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(Config::parse("[http]\nlisten = \"127.0.0.1:1\"\nport = 3\n").is_err());
        assert!(Config::parse("[fusion]\nresolutions = [16]\n").is_err());
        assert!(Config::parse("[fusion]\ntick_ms = 0\n").is_err());
        assert!(Config::parse("[status.10]\ntext = \"x\"\nclass = \"available\"\n").is_err());
        let c = Config::parse("[status.5]\ntext = \"Speak\"\nclass = \"available\"\n")
            .expect("a status override");
        let table = c.picture().expect("picture").status_table;
        assert_eq!(&*table.get(5).text, "Speak");
        assert_eq!(&*table.get(4).text, "Am Einsatzort");
        let bad_sector = "[[sectors]]\nid = \"x\"\nname = \"X\"\nrequire = [\"HLF\"]\ngeometry = { type = \"Circle\", coordinates = [1, 2] }\n";
        let err = Config::parse(bad_sector).expect_err("uncoverable sector");
        assert!(format!("{err:#}").contains("sector \"x\""), "{err:#}");
        for bad in [
            "[log]\nretention_ms = -1\n",
            "[limits]\nws_clients = 0\n",
            "[fusion]\nmax_entities = 0\n",
            "[[auth.tokens]]\nname = \"a\"\nrole = \"boss\"\nsha256 = \"00\"\n",
            "[[auth.tokens]]\nname = \"a\"\nrole = \"field\"\nsha256 = \"00\"\n",
            "[auth]\npublic_spaces = [\"everything\"]\n",
            "[mqtt.embedded_users]\ngw = \"short\"\n",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
        let c = Config::parse("").expect("empty is all defaults");
        assert_eq!(c.http.listen.to_string(), DEFAULT_HTTP);
    }
}
