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
    let policy = NamespacePolicy::new(&cfg.namespaces);
    let emulator = start_emulator_if_unconfigured(&mut cfg, &clock).await?;
    let result = read_and_compare(args, &cfg, clock, &source_url, &filters, &policy).await;
    if let Some(h) = emulator {
        h.stop().await;
    }
    let comparison = result?;
    let header = report::Header {
        source: source_url.as_str(),
        destination: &cfg.tcr.registry_url,
        seconds: started.elapsed().as_secs_f64(),
    };
    render(args, &comparison, &header)
}

/// With no TCR configured, start the embedded emulator (as `serve` does) and point `cfg` at it.
async fn start_emulator_if_unconfigured(
    cfg: &mut Config,
    clock: &SharedClock,
) -> Result<Option<crate::emulator::EmulatorHandle>, VerifyError> {
    if !cfg.tcr.registry_url.is_empty() {
        return Ok(None);
    }
    let h = crate::emulator::start(cfg.emulator.clone(), clock.clone()).await?;
    h.point_config_at_self(cfg);
    h.default_api_keys(cfg);
    Ok(Some(h))
}

/// Read the source and the destination (through the namespace rename map) and compare them.
async fn read_and_compare(
    args: &VerifyArgs,
    cfg: &Config,
    clock: SharedClock,
    source_url: &url::Url,
    filters: &options::Filters,
    policy: &NamespacePolicy,
) -> Result<compare::Comparison, VerifyError> {
    let concurrency = args.concurrency.max(1);
    let to_dest = |r: &str| map_ns(r, |ns| policy.ns_to_upstream(ns).to_string());
    let to_source = |r: &str| map_ns(r, |ns| policy.ns_to_client(ns).to_string());
    let dest = dest::Destination::connect(cfg, clock).await?;
    let src = Arc::new(client::RegistryClient::new(
        source_url.as_str(),
        args.creds()?,
        args.source_insecure,
    )?);
    let kind = match args.source_kind {
        Some(k) => k,
        None => source::detect(&src).await?,
    };
    let inventory = read_source(args, source_url, &src, kind, filters, concurrency).await?;
    let namespaces = dest_namespaces(&inventory, filters, policy, &to_dest);
    let with_charts = kind == SourceKind::Harbor && !args.no_charts;
    let there = dest
        .read(&namespaces, &to_source, filters, concurrency, with_charts)
        .await?;
    compare::compare(
        &inventory,
        &there,
        &to_dest,
        &to_source,
        filters,
        &src,
        &dest.registry,
    )
    .await
}

/// Read the source's inventory: through its registry API, or Harbor's v1 API (with charts).
async fn read_source(
    args: &VerifyArgs,
    source_url: &url::Url,
    src: &Arc<client::RegistryClient>,
    kind: SourceKind,
    filters: &options::Filters,
    concurrency: usize,
) -> Result<source::Inventory, VerifyError> {
    let progress = progress::Progress::stderr(args.format == Format::Table);
    match kind {
        SourceKind::Registry => {
            source::read_registry(src.clone(), filters, concurrency, &progress).await
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
            source::read_harbor(harbor, filters, concurrency, !args.no_charts, &progress).await
        }
    }
}

/// The destination namespaces to read: those of the source's repositories and the filtered
/// projects, renamed.
fn dest_namespaces(
    inventory: &source::Inventory,
    filters: &options::Filters,
    policy: &NamespacePolicy,
    to_dest: &dyn Fn(&str) -> String,
) -> BTreeSet<String> {
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
    namespaces
}

/// Write the Markdown report if asked, and render the answer for stdout.
fn render(
    args: &VerifyArgs,
    comparison: &compare::Comparison,
    header: &report::Header,
) -> Result<Outcome, VerifyError> {
    if let Some(path) = &args.report {
        std::fs::write(path, report::markdown(comparison, header, args.show_ok))
            .map_err(|e| VerifyError::Usage(format!("--report {}: {e}", path.display())))?;
    }
    let stdout = match args.format {
        Format::Table => report::table(comparison, header, args.show_ok),
        Format::Json => report::json(comparison, header, args.show_ok),
    };
    Ok(Outcome {
        complete: comparison.complete(),
        stdout,
    })
}
