//! Counters of namespace ensures by outcome (`tcr_adapter_namespace_ensures_total{outcome}`),
//! registered into the adapter's Prometheus registry by the caller.

use prometheus::{IntCounterVec, Opts, Registry};

/// How one `ensure` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Known to exist from the cache; no cloud call.
    ExistsCached,
    /// Found with `DescribeNamespaces`.
    Exists,
    /// Created with `CreateNamespace`.
    Created,
    /// `CreateNamespace` said it already exists (created concurrently elsewhere).
    Conflict,
    /// Would have been created; refused because of `namespaces.dry_run`.
    DryRun,
    /// Refused: policy, naming rule, `auto_create = false`, or the key's permissions.
    Denied,
    /// The cloud API failed (throttled, unreachable, internal error…).
    Error,
    /// Not checked: no cloud client or no API keys at all.
    Unchecked,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::ExistsCached,
        Outcome::Exists,
        Outcome::Created,
        Outcome::Conflict,
        Outcome::DryRun,
        Outcome::Denied,
        Outcome::Error,
        Outcome::Unchecked,
    ];

    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::ExistsCached => "exists_cached",
            Outcome::Exists => "exists",
            Outcome::Created => "created",
            Outcome::Conflict => "conflict",
            Outcome::DryRun => "dry_run",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
            Outcome::Unchecked => "unchecked",
        }
    }
}

pub(super) struct NamespaceMetrics {
    ensures: IntCounterVec,
}

impl NamespaceMetrics {
    pub(super) fn new() -> Self {
        let ensures = IntCounterVec::new(
            Opts::new(
                "tcr_adapter_namespace_ensures_total",
                "Namespace ensures (before writes) by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        for o in Outcome::ALL {
            ensures.with_label_values(&[o.as_str()]);
        }
        NamespaceMetrics { ensures }
    }

    pub(super) fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.ensures.clone()))
    }

    pub(super) fn inc(&self, o: Outcome) {
        self.ensures.with_label_values(&[o.as_str()]).inc();
    }

    pub(super) fn get(&self, o: Outcome) -> u64 {
        self.ensures.with_label_values(&[o.as_str()]).get()
    }
}
