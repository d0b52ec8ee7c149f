//! Docker token-auth scopes (`distribution: docs/spec/auth/scope.md`): parsing the `scope`
//! values a client asks for, rendering them back for challenges, and deciding what a caller may
//! be granted. Pure functions, no I/O.

use super::Access;
use crate::oci::RepoName;

/// Actions the adapter grants on `repository:` resources.
const REPOSITORY_ACTIONS: [&str; 4] = ["pull", "push", "delete", "*"];

/// Parse one resource scope `type:name:actions`. The type is split off at the FIRST colon and
/// the actions at the LAST one, so names may carry `host:port/`. A `type(class)` suffix is
/// dropped. Malformed scopes are `None` (ignored, as distribution does).
pub fn parse_one(scope: &str) -> Option<Access> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let kind = kind.split_once('(').map_or(kind, |(k, _)| k);
    if kind.is_empty() || name.is_empty() {
        return None;
    }
    let mut list: Vec<String> = Vec::new();
    for a in actions.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        if !list.iter().any(|x| x == a) {
            list.push(a.to_string());
        }
    }
    Some(Access {
        kind: kind.to_string(),
        name: name.to_string(),
        actions: list,
    })
}

/// Parse every `scope` value (each may hold several scopes separated by spaces). Scopes on the
/// same resource are merged.
pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Access> {
    let mut out: Vec<Access> = Vec::new();
    for value in values {
        for s in value.split(' ').filter(|s| !s.is_empty()) {
            let Some(a) = parse_one(s) else { continue };
            match out
                .iter_mut()
                .find(|o| o.kind == a.kind && o.name == a.name)
            {
                Some(o) => {
                    for act in a.actions {
                        if !o.actions.contains(&act) {
                            o.actions.push(act);
                        }
                    }
                }
                None => out.push(a),
            }
        }
    }
    out
}

/// Render `type:name:a,b` (the challenge and OAuth `scope` form).
pub fn render(access: &Access) -> String {
    format!(
        "{}:{}:{}",
        access.kind,
        access.name,
        access.actions.join(",")
    )
}

/// Render several scopes space-separated.
pub fn render_all(access: &[Access]) -> String {
    let mut out = String::new();
    for a in access {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&render(a));
    }
    out
}

/// What of `requested` an authenticated (or anonymous) caller may get: the intersection of the
/// request with the adapter's policy (anonymous callers: `pull` on repositories, nothing else).
/// Partial grants are normal; an access with no action left is kept with an empty action list,
/// as distribution does.
pub fn intersect(requested: &[Access], authenticated: bool) -> Vec<Access> {
    let mut out = Vec::with_capacity(requested.len());
    for a in requested {
        let allowed: &[&str] = match a.kind.as_str() {
            // Anonymous callers may try to pull (the namespace may be public; TCR decides).
            "repository" if !authenticated && RepoName::parse(&a.name).is_ok() => &["pull"],
            _ if !authenticated => &[],
            "repository" if RepoName::parse(&a.name).is_ok() => &REPOSITORY_ACTIONS,
            "registry" if a.name == "catalog" => &["*"],
            _ => &[],
        };
        out.push(Access {
            kind: a.kind.clone(),
            name: a.name.clone(),
            actions: a
                .actions
                .iter()
                .filter(|x| allowed.contains(&x.as_str()))
                .cloned()
                .collect(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(kind: &str, name: &str, actions: &[&str]) -> Access {
        Access {
            kind: kind.into(),
            name: name.into(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn splits_type_at_first_and_actions_at_last_colon() {
        assert_eq!(
            parse_one("repository:localhost:5000/team/app:pull,push"),
            Some(acc(
                "repository",
                "localhost:5000/team/app",
                &["pull", "push"]
            ))
        );
        assert_eq!(
            parse_one("registry:catalog:*"),
            Some(acc("registry", "catalog", &["*"]))
        );
        assert_eq!(
            parse_one("repository(plugin):a/b:pull"),
            Some(acc("repository", "a/b", &["pull"]))
        );
        assert_eq!(
            parse_one("repository:a/b:"),
            Some(acc("repository", "a/b", &[]))
        );
        assert_eq!(parse_one("garbage"), None);
        assert_eq!(parse_one("repository:nocolon"), None);
    }

    #[test]
    fn repeated_and_space_separated_values_merge() {
        let got = parse_all([
            "repository:a/b:pull repository:c/d:push",
            "repository:a/b:push",
            "",
        ]);
        assert_eq!(
            got,
            vec![
                acc("repository", "a/b", &["pull", "push"]),
                acc("repository", "c/d", &["push"])
            ]
        );
        assert!(parse_all(Vec::<&str>::new()).is_empty());
    }

    #[test]
    fn intersection_keeps_known_actions_on_valid_names_only() {
        let req = parse_all(["repository:a/b:pull,push,admin repository:Bad/Name:pull registry:catalog:* registry:other:*"]);
        let got = intersect(&req, true);
        assert_eq!(got[0], acc("repository", "a/b", &["pull", "push"]));
        assert_eq!(got[1], acc("repository", "Bad/Name", &[]));
        assert_eq!(got[2], acc("registry", "catalog", &["*"]));
        assert_eq!(got[3], acc("registry", "other", &[]));
        // Anonymous: pull on valid repositories only, nothing else.
        let anon = intersect(&req, false);
        assert_eq!(anon[0], acc("repository", "a/b", &["pull"]));
        assert!(anon[1..].iter().all(|a| a.actions.is_empty()));
    }

    #[test]
    fn renders_challenge_form() {
        let a = [
            acc("repository", "a/b", &["pull", "push"]),
            acc("registry", "catalog", &["*"]),
        ];
        assert_eq!(
            render_all(&a),
            "repository:a/b:pull,push registry:catalog:*"
        );
    }
}
