//! `railcast-server`: parse the configuration, start logging, bind, print the bound addresses,
//! serve until SIGTERM or Ctrl-C.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use railcast_server::config::Cli;
use railcast_server::{Config, Server};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("railcast-server: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!("{}", serde_json::to_string_pretty(&config).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let server = match Server::bind(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("railcast-server: {e}");
            return ExitCode::from(1);
        }
    };
    // One line each, on stdout, so scripts and tests can find the ports.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening http {}", server.http_addr());
    let _ = writeln!(out, "listening quic {}", server.quic_addr());
    let _ = writeln!(out, "quic certificate sha256 {}", server.fingerprint());
    let _ = out.flush();
    drop(out);
    match server.run(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("railcast-server: {e}");
            ExitCode::from(1)
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
