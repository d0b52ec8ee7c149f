//! Command line: parse, load the configuration, run one of `serve`, `emulator`, `check`, `verify`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tcr_adapter::config::{Config, EmulatorAccount};

mod check;

#[derive(Parser)]
#[command(
    name = "tcr-adapter",
    version,
    about = "Harbor → Tencent Container Registry replication adapter"
)]
struct Cli {
    /// TOML configuration file (environment: TCR_ADAPTER__<SECTION>__<KEY> overrides it).
    #[arg(long, short = 'c', global = true, env = "TCR_ADAPTER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Clone)]
enum Command {
    /// Run the adapter (the default); with no TCR configured it also starts the emulator.
    Serve,
    /// Run only the embedded TCR emulator (data plane + control plane).
    Emulator,
    /// Check the configuration and reachability of TCR; explain every failure.
    Check,
    /// Compare a source registry (or Harbor) with TCR by digest: exit 0 complete, 1 missing or
    /// different, 2 error.
    Verify(Box<tcr_adapter::verify::VerifyArgs>),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    let is_check = matches!(command, Command::Check);
    let is_verify = matches!(command, Command::Verify(_));
    let source = match &cli.config {
        Some(p) => format!("{} + environment", p.display()),
        None => "defaults + environment".to_string(),
    };
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) if is_check => {
            let mut r = check::Report::default();
            r.fail(
                "configuration",
                format!("{source}: {e}"),
                "a key is unknown, misspelt, of the wrong type, or a file it names is unreadable",
                "compare with config.example.toml (every key is listed there with its default)",
            );
            print!("{}", r.render());
            return std::process::ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut log = cfg.log.clone();
    if (is_check || is_verify) && log.level == "info" {
        // The checklist is the output (it reports what the components would warn about).
        log.level = "error".into();
    }
    tcr_adapter::telemetry::init_logging(&log);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Command::Verify(args) = &command {
        return run_verify(&rt, args, cfg);
    }
    if is_check {
        let report = rt.block_on(async move {
            let mut r = check::Report::default();
            r.ok("configuration", format!("loaded from {source}"));
            let rest = check::run(cfg, tcr_adapter::clock::system()).await;
            r.items.extend(rest.items);
            r
        });
        print!("{}", report.render());
        return if report.failed() == 0 {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        };
    }
    let result = rt.block_on(async move {
        match command {
            Command::Emulator => run_emulator(cfg).await,
            Command::Serve => run_serve(cfg).await,
            Command::Check | Command::Verify(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `verify`: the report on stdout; exit 0 complete, 1 missing or different, 2 error.
fn run_verify(
    rt: &tokio::runtime::Runtime,
    args: &tcr_adapter::verify::VerifyArgs,
    cfg: Config,
) -> std::process::ExitCode {
    match rt.block_on(tcr_adapter::verify::run(
        args,
        cfg,
        tcr_adapter::clock::system(),
    )) {
        Ok(outcome) => {
            print!("{}", outcome.stdout);
            std::process::ExitCode::from(if outcome.complete { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run_emulator(cfg: Config) -> std::io::Result<()> {
    let handle =
        tcr_adapter::emulator::start(cfg.emulator.clone(), tcr_adapter::clock::system()).await?;
    println!(
        "TCR emulator: data plane {} control plane {}",
        handle.registry_url(),
        handle.api_url()
    );
    // SIGTERM too (`docker stop`, systemd, a test harness): ctrl-c alone left the process running
    // with its listeners stopped by actix's own SIGTERM handling.
    shutdown_signal().await?;
    handle.stop().await;
    Ok(())
}

/// `serve`: the adapter; with no TCR configured, in front of the embedded emulator.
async fn run_serve(mut cfg: Config) -> std::io::Result<()> {
    let clock = tcr_adapter::clock::system();
    let emulator = if cfg.tcr.registry_url.is_empty() {
        let handle = tcr_adapter::emulator::start(cfg.emulator.clone(), clock.clone()).await?;
        // Its own CA (self-signed mode) is trusted without configuration.
        handle.point_config_at_self(&mut cfg);
        Some(handle)
    } else {
        None
    };
    let adapter = tcr_adapter::app::start(cfg.clone(), clock).await?;
    let base = adapter.url();
    println!(
        "tcr-adapter listening on {base} (upstream {})",
        cfg.tcr.registry_url
    );
    if emulator.is_some() {
        let host = base.split_once("://").map_or(base.as_str(), |(_, h)| h);
        let layout = cfg.emulator.data_dir.join("demo-image");
        let layout_note = match demo_layout::write(&layout) {
            Ok(()) => format!("oci:{}:hello", layout.display()),
            Err(e) => {
                eprintln!("warning: cannot write the demo image layout: {e}");
                "oci:<an OCI layout dir>:<tag>".to_string()
            }
        };
        println!(
            "No TCR configured: using the embedded TCR emulator (data plane {}, cloud API {}).",
            cfg.tcr.registry_url, cfg.tcr.api_endpoint
        );
        println!("Demo credentials (Harbor \"Access ID\" / \"Access Secret\"):");
        println!("  SecretId:  {}", EmulatorAccount::DEMO_SECRET_ID);
        println!("  SecretKey: {}", EmulatorAccount::DEMO_SECRET_KEY);
        println!("Push a demo image (written as an OCI layout, no network needed):");
        println!(
            "  skopeo copy --dest-tls-verify=false --dest-creds '{}:{}' {layout_note} docker://{host}/demo/hello:1",
            EmulatorAccount::DEMO_SECRET_ID,
            EmulatorAccount::DEMO_SECRET_KEY
        );
        println!(
            "  skopeo inspect --tls-verify=false --creds '{}:{}' docker://{host}/demo/hello:1",
            EmulatorAccount::DEMO_SECRET_ID,
            EmulatorAccount::DEMO_SECRET_KEY
        );
    }
    shutdown_signal().await?;
    adapter.stop().await;
    if let Some(e) = emulator {
        e.stop().await;
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// A tiny single-layer OCI image layout for the copy-paste demo.
mod demo_layout {
    use std::path::Path;

    fn put(blobs: &Path, data: &[u8]) -> std::io::Result<String> {
        let hex = hex::encode(openssl::sha::sha256(data));
        std::fs::write(blobs.join(&hex), data)?;
        Ok(format!("sha256:{hex}"))
    }

    pub fn write(dir: &Path) -> std::io::Result<()> {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs)?;
        // An uncompressed tar holding one file, hello.txt.
        let content = b"hello from tcr-adapter\n";
        let mut header = [0u8; 512];
        header[..9].copy_from_slice(b"hello.txt");
        header[100..107].copy_from_slice(b"0000644");
        header[108..115].copy_from_slice(b"0000000");
        header[116..123].copy_from_slice(b"0000000");
        header[124..135].copy_from_slice(format!("{:011o}", content.len()).as_bytes());
        header[136..147].copy_from_slice(b"00000000000");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|b| *b as u32).sum();
        header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let mut layer = header.to_vec();
        layer.extend_from_slice(content);
        layer.resize(1024 + 1024, 0);
        let layer_digest = put(&blobs, &layer)?;
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["cat", "/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        })
        .to_string();
        let config_digest = put(&blobs, config.as_bytes())?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest, "size": layer.len()}],
        })
        .to_string();
        let manifest_digest = put(&blobs, manifest.as_bytes())?;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": manifest_digest, "size": manifest.len(),
                           "annotations": {"org.opencontainers.image.ref.name": "hello"}}],
        });
        std::fs::write(dir.join("index.json"), index.to_string())?;
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
    }
}
