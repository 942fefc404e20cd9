//! `railcast-server`: parse the configuration, start logging, bind, print the bound addresses,
//! serve until SIGTERM or Ctrl-C.

use std::io::Write;
use std::process::ExitCode;

use railcast_server::config::{Cli, Command};
use railcast_server::{Config, Server, Settings};

fn main() -> ExitCode {
    let cli = Cli::from_env();
    if let Some(Command::Healthcheck(args)) = &cli.command {
        return runtime(Config::defaults().event_interval).block_on(railcast_server::healthcheck::main(&cli, args));
    }
    let config = match Config::load(&cli).and_then(|c| Settings::from_config(&c).map(|_| c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("railcast-server: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    runtime(config.event_interval).block_on(serve(config))
}

/// The multi-thread runtime (one worker per CPU the process may use), polling for I/O and timers
/// every `event_interval` task polls (the `event_interval` setting).
fn runtime(event_interval: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(u32::try_from(event_interval).unwrap_or(u32::MAX))
        .build()
        .unwrap_or_else(|e| {
            eprintln!("railcast-server: cannot start the runtime: {e}");
            std::process::exit(1)
        })
}

async fn serve(config: Config) -> ExitCode {
    railcast_server::logging::init(
        railcast_server::logging::LogFormat::parse(&config.log_format)
            .unwrap_or(railcast_server::logging::LogFormat::Text),
    );
    let config_credentials_out = config.credentials_out.clone();
    let server = match Server::bind(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("railcast-server: {e}");
            return ExitCode::from(1);
        }
    };
    // One line each, on stdout, so scripts and tests can find the ports.
    let mut out = std::io::stdout().lock();
    let scheme = server.http_scheme();
    let _ = writeln!(out, "listening {scheme} {}", server.http_addr());
    let _ = writeln!(out, "listening quic {}", server.quic_addr());
    if let Some(addr) = server.webtransport_addr() {
        let _ = writeln!(out, "listening webtransport {addr}");
    }
    if let Some(addr) = server.webrtc_udp_addr() {
        let _ = writeln!(out, "listening webrtc-udp {addr}");
    }
    if let Some(addr) = server.metrics_addr() {
        let _ = writeln!(out, "listening metrics {addr}");
    }
    let _ = writeln!(out, "quic certificate sha256 {}", server.fingerprint());
    if let Some(node) = server.cluster_node() {
        let _ = writeln!(out, "cluster node {node}");
    }
    if let Some(creds) = server.generated_credentials() {
        print_demo_credentials(&mut out, creds, scheme, server.http_addr(), &config_credentials_out);
    }
    let _ = out.flush();
    drop(out);
    reload_on_sighup(server.auth(), server.http_tls());
    match server.run(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("railcast-server: {e}");
            ExitCode::from(1)
        }
    }
}

/// Demo credentials, one per line: `token ROLE NAME TOKEN`, console URLs, and where the train
/// tokens are.
fn print_demo_credentials(
    out: &mut impl Write,
    creds: &railcast_server::auth::CredentialsFile,
    scheme: &str,
    http: std::net::SocketAddr,
    file: &str,
) {
    let _ = writeln!(out, "demo credentials (no auth_file; generated for this run, see docs/security.md):");
    for c in &creds.clients {
        let token = c.token.as_deref().unwrap_or_default();
        let _ = writeln!(out, "token {} {} {token}", c.role.name(), c.name);
    }
    for c in &creds.clients {
        let token = c.token.as_deref().unwrap_or_default();
        let _ = writeln!(out, "console {} {scheme}://{http}/#token={token}", c.role.name());
    }
    // Numbered ids in number order: train-9 before train-10.
    let natural = |k: &&String| (k.len(), k.as_str().to_owned());
    let first = creds.trains.keys().min_by_key(natural).map_or("-", String::as_str);
    let last = creds.trains.keys().max_by_key(natural).map_or("-", String::as_str);
    if file.is_empty() {
        for (id, token) in &creds.trains {
            let _ = writeln!(out, "train token {id} {token}");
        }
    } else {
        let _ = writeln!(out, "train tokens ({} trains, {first} … {last}) in {file}", creds.trains.len());
    }
}

/// SIGHUP re-reads the credentials file (token rotation without a restart) and the HTTP
/// listener's certificate and key (renewal without a restart; connections already open keep the
/// old certificate). A file that cannot be used leaves the old one in force.
fn reload_on_sighup(
    auth: std::sync::Arc<railcast_server::auth::Auth>,
    http_tls: Option<std::sync::Arc<railcast_server::tls::HttpTls>>,
) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            match auth.reload() {
                Ok((clients, trains)) => tracing::info!(clients, trains, "credentials reloaded"),
                Err(e) => tracing::error!("credentials not reloaded, the old ones stay in force: {e}"),
            }
            if let Some(tls) = &http_tls {
                match tls.reload() {
                    Ok(sha256) => tracing::info!(%sha256, "HTTPS certificate reloaded"),
                    Err(e) => tracing::error!("HTTPS certificate not reloaded, the old one stays in force: {e}"),
                }
            }
        }
    });
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
