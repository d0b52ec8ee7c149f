//! `tcr-adapter verify`: is everything the old registry holds in TCR, byte for byte? Reads the
//! source (a registry or Harbor's v1 API), reads TCR as configured (cloud API for tags and
//! digests, data plane for manifests and charts; the embedded emulator on the configured data
//! directory when no TCR is configured, as `serve` does), compares by digest through the
//! namespace rename map, and reports missing, different, platform-converted and extra items.
//!
//! Exit codes: 0 complete, 1 something missing or different, 2 an error (unreachable source,
//! refused credentials, bad arguments).

pub mod client;
pub mod compare;
pub mod dest;
pub mod options;
pub mod progress;
pub mod report;
pub mod source;

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::namespaces::policy::NamespacePolicy;

pub use options::{Format, SourceKind, VerifyArgs};

/// Why `verify` could not give an answer (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach {0}: {1}")]
    Transport(String, String),
    #[error("credentials refused: {0}")]
    Auth(String),
    #[error("source: {0}")]
    Source(String),
    #[error("destination: {0}")]
    Destination(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The answer, rendered.
pub struct Outcome {
    pub complete: bool,
    pub stdout: String,
}

/// Map a repository's first path component (the namespace) with `f`.
fn map_ns(name: &str, f: impl Fn(&str) -> String) -> String {
    match name.split_once('/') {
        Some((ns, rest)) => format!("{}/{rest}", f(ns)),
        None => f(name),
    }
}

/// Run `verify`: read both sides, compare, render (and write the Markdown report if asked).
pub async fn run(
    args: &VerifyArgs,
    mut cfg: Config,
    clock: SharedClock,
) -> Result<Outcome, VerifyError> {
    let started = std::time::Instant::now();
    let source_url = args.source_url()?;
    let filters = args.filters()?;
    let concurrency = args.concurrency.max(1);
    let policy = NamespacePolicy::new(&cfg.namespaces);
    let to_dest = |r: &str| map_ns(r, |ns| policy.ns_to_upstream(ns).to_string());
    let to_source = |r: &str| map_ns(r, |ns| policy.ns_to_client(ns).to_string());

    let mut emulator = None;
    if cfg.tcr.registry_url.is_empty() {
        let h = crate::emulator::start(cfg.emulator.clone(), clock.clone()).await?;
        h.point_config_at_self(&mut cfg);
        h.default_api_keys(&mut cfg);
        emulator = Some(h);
    }
    let result = async {
        let dest = dest::Destination::connect(&cfg, clock.clone()).await?;
        let src = Arc::new(client::RegistryClient::new(
            source_url.as_str(),
            args.creds()?,
            args.source_insecure,
        )?);
        let kind = match args.source_kind {
            Some(k) => k,
            None => source::detect(&src).await?,
        };
        let progress = progress::Progress::stderr(args.format == Format::Table);
        let inventory = match kind {
            SourceKind::Registry => {
                source::read_registry(src.clone(), &filters, concurrency, &progress).await?
            }
            SourceKind::Harbor => {
                let harbor = Arc::new(
                    client::RegistryClient::new(
                        source_url.as_str(),
                        args.creds()?,
                        args.source_insecure,
                    )?
                    .preemptive_basic(),
                );
                let inv =
                    source::read_harbor(harbor, &filters, concurrency, !args.no_charts, &progress)
                        .await?;
                inv
            }
        };
        let mut namespaces: BTreeSet<String> = inventory
            .images
            .keys()
            .chain(inventory.charts.keys())
            .map(|r| to_dest(r).split('/').next().unwrap_or("").to_string())
            .collect();
        namespaces.extend(
            filters
                .projects
                .iter()
                .map(|p| policy.ns_to_upstream(p).to_string()),
        );
        let with_charts = kind == SourceKind::Harbor && !args.no_charts;
        let there = dest
            .read(&namespaces, &to_source, &filters, concurrency, with_charts)
            .await?;
        let comparison = compare::compare(
            &inventory,
            &there,
            &to_dest,
            &to_source,
            &filters,
            &src,
            &dest.registry,
        )
        .await?;
        Ok::<_, VerifyError>(comparison)
    }
    .await;
    if let Some(h) = emulator {
        h.stop().await;
    }
    let comparison = result?;
    let header = report::Header {
        source: source_url.as_str(),
        destination: &cfg.tcr.registry_url,
        seconds: started.elapsed().as_secs_f64(),
    };
    if let Some(path) = &args.report {
        std::fs::write(path, report::markdown(&comparison, &header, args.show_ok))
            .map_err(|e| VerifyError::Usage(format!("--report {}: {e}", path.display())))?;
    }
    let stdout = match args.format {
        Format::Table => report::table(&comparison, &header, args.show_ok),
        Format::Json => report::json(&comparison, &header, args.show_ok),
    };
    Ok(Outcome {
        complete: comparison.complete(),
        stdout,
    })
}
