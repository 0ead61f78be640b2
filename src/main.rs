//! `rescuemate`: the command line and composition root.
//!
//! It wires ingest → fusion → viewer (DESIGN §2): ingest decodes MQTT into
//! events on a bounded channel, the owner task ([`driver`]) applies them and
//! broadcasts deltas, the viewer serves websocket clients. It also runs the
//! simulator (`sim`) and the all-in-one `demo`.

mod bench;
mod bench_e2e;
mod bench_ingest;
mod cli;
mod config;
mod driver;
mod render_cmd;
mod replay;
mod scale;
mod server;

use clap::Parser;

/// The engine and the websocket tasks allocate and free many small,
/// short-lived blocks per tick (views, name lists, messages); mimalloc's
/// per-thread free lists serve them faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    // rumqttd logs every routine client disconnect as an error, and wgpu's
    // backend probing (map images) each backend a machine lacks; RUST_LOG
    // (e.g. `info,rumqttd=warn`) turns them back on.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,rumqttd=off,wgpu_hal=off,wgpu_core=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
