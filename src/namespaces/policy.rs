//! What a namespace may be called and which ones the adapter may touch: TCR's naming rule, the
//! `namespaces.allow` / `namespaces.deny` glob patterns and the Harbor-project → TCR-namespace
//! rename map (both directions). Pure functions of the configuration: no I/O, no cloud calls.

use std::collections::BTreeMap;

use globset::{Glob, GlobMatcher};

use crate::config::NamespacesConfig;
use crate::oci::{ErrorCode, OciError, RepoName};

/// TCR's rule for namespace names, as stated in refusals.
pub const NAMING_RULE: &str = "2 to 30 characters: lowercase letters, digits and the separators \
    '.', '_', '-'; it must start and end with a letter or digit and never have two separators in \
    a row";

/// Whether `name` satisfies TCR's naming rule (`^[a-z0-9]+(?:[._-][a-z0-9]+)*$`, 2–30 chars).
pub fn is_valid_namespace(name: &str) -> bool {
    let b = name.as_bytes();
    if !(2..=30).contains(&b.len()) {
        return false;
    }
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let sep = |c: u8| matches!(c, b'.' | b'_' | b'-');
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    b.windows(2).all(|w| !(sep(w[0]) && sep(w[1]))) && b.iter().all(|&c| alnum(c) || sep(c))
}

/// A compiled glob pattern; an invalid pattern is kept with `matcher: None` and fails closed.
#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    matcher: Option<GlobMatcher>,
}

impl Pattern {
    fn compile(text: &str) -> Pattern {
        let matcher = match Glob::new(text) {
            Ok(g) => Some(g.compile_matcher()),
            Err(e) => {
                tracing::error!(pattern = text, error = %e, "invalid namespace glob pattern");
                None
            }
        };
        Pattern {
            text: text.to_string(),
            matcher,
        }
    }
}

/// The namespace policy compiled from [`NamespacesConfig`].
#[derive(Debug, Clone)]
pub struct NamespacePolicy {
    allow: Vec<Pattern>,
    deny: Vec<Pattern>,
    /// client (Harbor project) → upstream (TCR namespace).
    map: BTreeMap<String, String>,
    /// upstream → client.
    reverse: BTreeMap<String, String>,
}

impl NamespacePolicy {
    pub fn new(cfg: &NamespacesConfig) -> Self {
        let mut reverse = BTreeMap::new();
        for (k, v) in &cfg.map {
            reverse.entry(v.clone()).or_insert_with(|| k.clone());
        }
        NamespacePolicy {
            allow: cfg.allow.iter().map(|p| Pattern::compile(p)).collect(),
            deny: cfg.deny.iter().map(|p| Pattern::compile(p)).collect(),
            map: cfg.map.clone(),
            reverse,
        }
    }

    /// Check the configuration: every pattern compiles, every map target obeys the naming rule,
    /// and no two projects map to the same namespace. For start-up validation.
    pub fn validate(cfg: &NamespacesConfig) -> Result<(), String> {
        for p in cfg.allow.iter().chain(&cfg.deny) {
            Glob::new(p).map_err(|e| format!("namespaces: invalid glob pattern {p:?}: {e}"))?;
        }
        let mut seen = BTreeMap::new();
        for (k, v) in &cfg.map {
            if !is_valid_namespace(v) {
                return Err(format!(
                    "namespaces.map: {k:?} -> {v:?}: TCR namespace names are {NAMING_RULE}"
                ));
            }
            if let Some(other) = seen.insert(v.clone(), k.clone()) {
                return Err(format!(
                    "namespaces.map: both {other:?} and {k:?} map to {v:?}; the map must be one-to-one"
                ));
            }
        }
        Ok(())
    }

    /// The upstream namespace for a client namespace.
    pub fn ns_to_upstream<'a>(&'a self, client_ns: &'a str) -> &'a str {
        self.map
            .get(client_ns)
            .map(String::as_str)
            .unwrap_or(client_ns)
    }

    /// The client namespace for an upstream namespace.
    pub fn ns_to_client<'a>(&'a self, upstream_ns: &'a str) -> &'a str {
        self.reverse
            .get(upstream_ns)
            .map(String::as_str)
            .unwrap_or(upstream_ns)
    }

    pub fn to_upstream(&self, repo: &RepoName) -> RepoName {
        match self.map.get(repo.namespace()) {
            Some(ns) => repo.with_namespace(ns),
            None => repo.clone(),
        }
    }

    pub fn to_client(&self, repo: &RepoName) -> RepoName {
        match self.reverse.get(repo.namespace()) {
            Some(ns) => repo.with_namespace(ns),
            None => repo.clone(),
        }
    }

    /// Whether an upstream repository is reachable by a client name (an upstream namespace that
    /// is itself renamed away by the map is shadowed and not listed).
    pub fn is_visible(&self, upstream: &RepoName) -> bool {
        self.to_upstream(&self.to_client(upstream)) == *upstream
    }

    /// Refuse `upstream_ns` unless it obeys TCR's naming rule and the allow/deny patterns.
    /// Patterns are matched against both the TCR namespace and the client's project name.
    pub fn check(&self, upstream_ns: &str) -> Result<(), OciError> {
        if !is_valid_namespace(upstream_ns) {
            return Err(OciError::new(
                ErrorCode::Denied,
                format!(
                    "namespace {} is not a valid TCR namespace name: names are {NAMING_RULE}",
                    crate::oci::excerpt(upstream_ns)
                ),
            ));
        }
        let client_ns = self.ns_to_client(upstream_ns);
        let names = [upstream_ns, client_ns];
        let hit = |p: &Pattern| match &p.matcher {
            Some(m) => names.iter().any(|n| m.is_match(n)),
            None => false,
        };
        if let Some(p) = self.deny.iter().find(|p| p.matcher.is_none() || hit(p)) {
            let why = if p.matcher.is_none() {
                " (the pattern is invalid, so everything is refused until it is fixed)"
            } else {
                ""
            };
            return Err(OciError::new(
                ErrorCode::Denied,
                format!(
                    "namespace {upstream_ns:?} is denied by the pattern {:?} in namespaces.deny{why}",
                    p.text
                ),
            ));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(hit) {
            let list: Vec<&str> = self.allow.iter().map(|p| p.text.as_str()).collect();
            return Err(OciError::new(
                ErrorCode::Denied,
                format!(
                    "namespace {upstream_ns:?} matches none of the patterns in namespaces.allow ({})",
                    list.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naming_rule() {
        for ok in [
            "ab",
            "team-a",
            "a.b_c-d",
            "0123456789012345678901234567ab",
            "a1",
        ] {
            assert!(is_valid_namespace(ok), "{ok}");
        }
        for bad in [
            "a",
            "",
            "Team",
            "-ab",
            "ab-",
            "a--b",
            "a._b",
            "a/b",
            "a b",
            "0123456789012345678901234567abc",
        ] {
            assert!(!is_valid_namespace(bad), "{bad}");
        }
    }

    #[test]
    fn map_is_consistent_both_ways() {
        let cfg = NamespacesConfig {
            map: [("library".to_string(), "lib-tcr".to_string())].into(),
            ..Default::default()
        };
        let p = NamespacePolicy::new(&cfg);
        let r = RepoName::parse("library/nginx").unwrap();
        let u = p.to_upstream(&r);
        assert_eq!(u.as_str(), "lib-tcr/nginx");
        assert_eq!(p.to_client(&u), r);
        // The upstream `library` namespace is shadowed by the rename.
        let shadow = RepoName::parse("library/x").unwrap();
        assert!(!p.is_visible(&shadow));
        assert!(p.is_visible(&u));
    }

    #[test]
    fn invalid_deny_pattern_fails_closed() {
        let cfg = NamespacesConfig {
            deny: vec!["a[".into()],
            ..Default::default()
        };
        assert!(NamespacePolicy::validate(&cfg).is_err());
        let e = NamespacePolicy::new(&cfg).check("team-a").unwrap_err();
        assert!(e.message.contains("invalid"), "{}", e.message);
    }
}
