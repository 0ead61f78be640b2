//! The server against a Mosquitto that speaks TLS and wants a password:
//! a CA of our own (made with openssl), `mqtts://user:pass@localhost:PORT`
//! and `mqtt.ca_file`. A wrong password or an untrusted CA keeps the
//! server from getting in; the right ones bring the data.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;

fn run(dir: &Path, args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .output()
        .expect("run a tool");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for localhost / 127.0.0.1 signed by it,
/// and a second CA that signed nothing.
fn make_pki(dir: &Path) {
    let self_signed = |cn: &str, name: &str| {
        let subj = format!("/CN={cn}");
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        run(
            dir,
            &[
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                &subj, "-keyout", &key, "-out", &pem,
            ],
        );
    };
    self_signed("RESCUE MATE test CA", "ca");
    self_signed("someone else", "other");
    run(
        dir,
        &[
            "openssl",
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext file");
    run(
        dir,
        &[
            "openssl",
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
    run(
        dir,
        &[
            "mosquitto_passwd",
            "-b",
            "-c",
            "passwd",
            "rescuemate",
            "ingest-password-1",
        ],
    );
    #[cfg(unix)]
    {
        // Mosquitto started as root reads these as its own user.
        use std::os::unix::fs::PermissionsExt;
        for f in ["ca.pem", "server.pem", "server.key", "passwd"] {
            std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

/// `rescuemate serve` against `url` with config file `cfg`.
fn serve(url: &str, cfg: &str) -> (Proc, std::net::SocketAddr) {
    let p = Proc::rescuemate(&[
        "serve",
        "--mqtt",
        url,
        "--http",
        "127.0.0.1:0",
        "--config",
        cfg,
    ]);
    let addr = p.http_addr();
    (p, addr)
}

fn config(dir: &Path, name: &str, ca: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("[mqtt]\nca_file = \"{}\"\n", dir.join(ca).display()),
    )
    .expect("config");
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_over_tls_with_a_password() {
    let Some(bin) = mosquitto_binary() else {
        skip_unless(false, "mosquitto (apt-get install mosquitto)");
        return;
    };
    if skip_unless(
        have("openssl", "version") && have("mosquitto_passwd", "-h"),
        "openssl and mosquitto_passwd (apt-get install openssl mosquitto)",
    ) {
        return;
    }
    let pki = std::env::temp_dir().join(format!("rm-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&pki);
    std::fs::create_dir_all(&pki).expect("dir");
    make_pki(&pki);
    let plain = free_port();
    let tls = free_port();
    // Anonymous publishing on the plain listener (the test's sensors); the
    // TLS listener checks the password file.
    let _broker = Mosquitto::start_with(
        bin,
        plain,
        Persistence::Off,
        &format!(
            "per_listener_settings false\npassword_file {pki}/passwd\n\
             listener {tls} 127.0.0.1\ncafile {pki}/ca.pem\ncertfile {pki}/server.pem\n\
             keyfile {pki}/server.key\n",
            pki = pki.display()
        ),
    );
    let good_ca = config(&pki, "good.toml", "ca.pem");
    let other_ca = config(&pki, "other.toml", "other.pem");

    // Untrusted CA, then a wrong password: no connection, so not ready.
    for (cfg, url) in [
        (
            &other_ca,
            format!("mqtts://rescuemate:ingest-password-1@localhost:{tls}"),
        ),
        (
            &good_ca,
            format!("mqtts://rescuemate:wrong-password@localhost:{tls}"),
        ),
    ] {
        let (_p, addr) = serve(&url, cfg);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(http_get(addr, "/healthz").0, 503, "{url} must not get in");
    }

    // The right CA and password: healthy, and data published on the plain
    // listener arrives through TLS.
    let url = format!("mqtts://rescuemate:ingest-password-1@localhost:{tls}");
    let (_p, addr) = serve(&url, &good_ca);
    wait_healthy(addr);
    let (c, _rx) = mqtt_client(plain, "tls-test-sensor").await;
    let now = now_ms();
    publish(
        &c,
        "rm/v1/live/unit/hlf-tls/pos",
        json!({"ts": now, "lat": 53.55, "lon": 9.99}).to_string(),
        false,
    )
    .await;
    eventually("the unit through TLS", Duration::from_secs(10), || {
        let s = snapshot(addr, "live")?;
        s["units"]
            .as_array()?
            .iter()
            .find(|u| u["id"] == "hlf-tls")
            .map(|_| ())
    })
    .await;
    let _ = std::fs::remove_dir_all(&pki);
}
