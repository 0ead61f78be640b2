//! The publisher against a real MQTT broker (rumqttd, in process).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use ingest::wire::{
    IncidentMsg, SensorMetaMsg, SensorObsMsg, UnitMetaMsg, UnitPosMsg, UnitStatusMsg,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sensors_sim::{SimError, SimOptions, run};

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Starts the project's embedded broker on a free loopback port.
fn start_broker() -> u16 {
    ingest::EmbeddedBroker::start(([127, 0, 0, 1], 0).into())
        .expect("embedded broker")
        .addr()
        .port()
}

fn options(id: &str, port: u16) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_the_scenario_to_a_broker() {
    let port = start_broker();

    // A subscriber that collects everything of the drill space.
    let (sub, mut sub_loop) = AsyncClient::new(options("it-subscriber", port), 64);
    sub.subscribe("rm/v1/drill-it/#", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut subscribed = Some(subscribed_tx);
        loop {
            match sub_loop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = seen_tx.send((p.topic, p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(5), subscribed_rx)
        .await
        .expect("suback in time")
        .expect("suback");

    let opts = SimOptions {
        space: "drill-it".into(),
        speed: 600.0,
        seed: 4,
        duration: Some(Duration::from_secs(3)),
        tick: Duration::from_millis(200),
        ..SimOptions::default()
    };
    let report = tokio::time::timeout(
        Duration::from_secs(20),
        run(options("it-sim", port), opts, std::future::pending()),
    )
    .await
    .expect("run ends after its duration")
    .expect("run");
    assert!(report.ticks >= 10, "{report:?}");
    assert!(report.published > 100, "{report:?}");
    assert_eq!(report.dropped, 0, "{report:?}");
    assert_eq!(report.acknowledged, report.published, "{report:?}");
    assert_eq!(report.connections, 1, "{report:?}");
    assert!(report.scenario_seconds >= 1500.0, "{report:?}");

    // Everything that arrives decodes into the wire types.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut counts = BTreeMap::<&str, u64>::new();
    let mut total = 0u64;
    while let Ok((topic, payload)) = seen_rx.try_recv() {
        total += 1;
        let kind = if topic.ends_with("/meta") && topic.contains("/sensor/") {
            serde_json::from_slice::<SensorMetaMsg>(&payload).expect("sensor meta");
            "sensor meta"
        } else if topic.ends_with("/obs") {
            serde_json::from_slice::<SensorObsMsg>(&payload).expect("obs");
            "obs"
        } else if topic.ends_with("/meta") {
            serde_json::from_slice::<UnitMetaMsg>(&payload).expect("unit meta");
            "unit meta"
        } else if topic.ends_with("/pos") {
            serde_json::from_slice::<UnitPosMsg>(&payload).expect("pos");
            "pos"
        } else if topic.ends_with("/status") {
            serde_json::from_slice::<UnitStatusMsg>(&payload).expect("status");
            "status"
        } else if topic.contains("/incident/") {
            if !payload.is_empty() {
                serde_json::from_slice::<IncidentMsg>(&payload).expect("incident");
            }
            "incident"
        } else {
            panic!("unexpected topic {topic}");
        };
        *counts.entry(kind).or_default() += 1;
    }
    for kind in [
        "sensor meta",
        "obs",
        "unit meta",
        "pos",
        "status",
        "incident",
    ] {
        assert!(counts.contains_key(kind), "no {kind}: {counts:?}");
    }
    assert_eq!(total, report.published, "{counts:?}");
}

#[tokio::test]
async fn an_unreachable_broker_does_not_stop_the_run() {
    let port = free_port(); // nothing listens there
    let opts = SimOptions {
        space: "drill-nobroker".into(),
        speed: 60.0,
        duration: Some(Duration::from_millis(1_500)),
        tick: Duration::from_millis(100),
        ..SimOptions::default()
    };
    let started = std::time::Instant::now();
    let report = run(options("it-nobroker", port), opts, std::future::pending())
        .await
        .expect("run");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(report.ticks >= 10, "{report:?}");
    assert_eq!(report.acknowledged, 0);
    assert_eq!(report.connections, 0);
    assert!(report.published + report.dropped > 0, "{report:?}");
}

#[tokio::test]
async fn shutdown_ends_an_endless_run() {
    let port = free_port();
    let opts = SimOptions {
        space: "drill-stop".into(),
        tick: Duration::from_millis(50),
        ..SimOptions::default()
    };
    let shutdown = tokio::time::sleep(Duration::from_millis(400));
    let report = tokio::time::timeout(
        Duration::from_secs(8),
        run(options("it-stop", port), opts, shutdown),
    )
    .await
    .expect("shutdown honoured")
    .expect("run");
    assert!(report.ticks >= 2, "{report:?}");
}

#[tokio::test]
async fn bad_options_are_refused_before_connecting() {
    let opts = SimOptions::new("no-such-scenario");
    let err = run(options("it-bad", 1), opts, std::future::pending()).await;
    assert!(matches!(err, Err(SimError::UnknownScenario(_))));
    let opts = SimOptions {
        space: "Live".into(),
        ..SimOptions::default()
    };
    let err = run(options("it-bad", 1), opts, std::future::pending()).await;
    assert!(matches!(err, Err(SimError::InvalidSpace(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_at_full_speed_waits_for_the_broker_and_loses_nothing() {
    let port = start_broker();
    let opts = SimOptions {
        space: "drill-load".into(),
        duration: Some(Duration::from_millis(1_500)),
        load: Some(sensors_sim::LoadOptions {
            sensors: 500,
            units: 50,
            rate: 0.0,
        }),
        ..SimOptions::default()
    };
    let report = tokio::time::timeout(
        Duration::from_secs(20),
        run(options("it-load", port), opts, std::future::pending()),
    )
    .await
    .expect("run ends after its duration")
    .expect("run");
    // Far more than a scenario sends, none dropped, all acknowledged.
    assert!(report.published > 5_000, "{report:?}");
    assert_eq!(report.dropped, 0, "{report:?}");
    assert_eq!(report.acknowledged, report.published, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_file_is_checked_before_connecting_and_then_played() {
    let dir = std::env::temp_dir().join(format!("rm-sim-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("broken.toml");
    std::fs::write(&path, "[scenario]\nname = \"x\"\n").expect("write");
    let opts = SimOptions {
        file: Some(path.clone()),
        ..SimOptions::default()
    };
    let err = run(options("it-file", 1), opts, std::future::pending()).await;
    assert!(
        matches!(&err, Err(SimError::ScenarioFile(m)) if m.contains("broken.toml") && m.contains("title")),
        "{err:?}"
    );
    let text = sensors_sim::builtin_file("mass-casualty").expect("built in");
    std::fs::write(&path, text).expect("write");
    let port = start_broker();
    let opts = SimOptions {
        file: Some(path),
        space: "drill-file".into(),
        speed: 600.0,
        duration: Some(Duration::from_secs(1)),
        tick: Duration::from_millis(100),
        ..SimOptions::default()
    };
    let report = run(options("it-file", port), opts, std::future::pending())
        .await
        .expect("run");
    assert!(report.published > 100, "{report:?}");
    assert_eq!(report.acknowledged, report.published, "{report:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_load_into_an_unreachable_broker_still_ends_on_time() {
    let port = free_port(); // nothing listens there
    let opts = SimOptions {
        space: "drill-noload".into(),
        duration: Some(Duration::from_millis(1_500)),
        load: Some(sensors_sim::LoadOptions {
            sensors: 100,
            units: 10,
            rate: 0.0,
        }),
        ..SimOptions::default()
    };
    let started = std::time::Instant::now();
    let report = run(options("it-noload", port), opts, std::future::pending())
        .await
        .expect("run");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.acknowledged, 0, "{report:?}");
    assert!(report.dropped > 0, "{report:?}");
}
