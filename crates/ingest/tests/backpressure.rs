//! Fusion stalls, the broker keeps sending: the ingest loop must keep its
//! broker link alive (keep-alives, acks), hold a bounded backlog, and hand
//! over every message in order once fusion reads again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fusion::Event;
use ingest::broker::EmbeddedBroker;
use ingest::mqtt::{IngestConfig, LinkStatus, mqtt_options, now_ms, run};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio::sync::{mpsc, oneshot};

const MESSAGES: u64 = 100;
const KEEP_ALIVE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_fusion_keeps_the_broker_link_and_loses_nothing() {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let broker = EmbeddedBroker::start(any).expect("embedded broker");
    let mut opts = mqtt_options(&broker.url(), "ingest-backpressure").expect("options");
    opts.set_keep_alive(KEEP_ALIVE);
    // Fusion's queue holds four events and nobody reads it for a while.
    let (events, mut fusion) = mpsc::channel(4);
    let status = Arc::new(LinkStatus::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let ingest = tokio::spawn(run(
        opts,
        IngestConfig::default(),
        events,
        status.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status.is_ready() {
        assert!(Instant::now() < deadline, "ingest did not subscribe");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let addr = broker.addr();
    let (publisher, mut eventloop) = AsyncClient::new(
        MqttOptions::new("publisher", addr.ip().to_string(), addr.port()),
        1_000,
    );
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let ts = now_ms();
    for seq in 1..=MESSAGES {
        let payload = format!(r#"{{"ts":{ts},"value":{seq},"seq":{seq}}}"#);
        publisher
            .publish("rm/v1/live/sensor/g1/obs", QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish");
    }

    // Longer than the broker waits for a silent client (1.5 × keep-alive).
    tokio::time::sleep(KEEP_ALIVE * 5 / 2).await;
    assert_eq!(status.connects(), 1, "the link held while fusion stalled");
    assert!(status.is_ready());

    let mut seqs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while seqs.len() < usize::try_from(MESSAGES).expect("small") {
        let env = tokio::time::timeout_at(deadline, fusion.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {MESSAGES} arrived", seqs.len()))
            .expect("ingest alive");
        if let Event::SensorObs(o) = env.event {
            seqs.push(o.seq.expect("seq"));
        }
    }
    let expected: Vec<u64> = (1..=MESSAGES).collect();
    assert_eq!(seqs, expected, "every message, once, in order");
    assert_eq!(status.connects(), 1);
    let _ = stop.send(());
    ingest.await.expect("ingest ends cleanly");
}
