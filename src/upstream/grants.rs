//! What TCR's own token realm grants a credential on one repository: the adapter asks the realm
//! with the caller's credential for a scope and reads the `access` claim of the token TCR
//! returns. The realm grants the part of a scope the credential may do and leaves the rest out
//! (Harbor `src/core/service/token/creator.go` `repositoryFilter`; docs/tcr-contract.md
//! § Permissions), so the claim is TCR's own answer to "may this caller do that here?". Used
//! before the adapter acts for a registry-credential caller with other keys (a tag deletion
//! through `DeleteImage` with the provisioner's keys).

use base64::Engine;
use serde::Deserialize;

use super::{BasicAuth, Challenge, UpstreamClient, UpstreamError};

/// One entry of a docker token's `access` claim.
#[derive(Debug, Deserialize)]
struct Access {
    #[serde(rename = "type", default)]
    typ: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    actions: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    access: Vec<Access>,
}

impl UpstreamClient {
    /// The actions TCR's realm grants `cred` on `repository:<repo>` when asked for `actions`
    /// (comma-separated, e.g. `delete`); `*` stands for every action. `Ok(None)`: there is no
    /// grant to read — the upstream has no token realm (Basic or no authentication), or its
    /// token is not a JWT with an `access` claim. A realm that refuses the credential is
    /// [`UpstreamError::CredentialRejected`]. Never cached: the answer is for one decision.
    pub async fn granted_actions(
        &self,
        cred: &BasicAuth,
        repo: &str,
        actions: &str,
    ) -> Result<Option<Vec<String>>, UpstreamError> {
        let Challenge::Bearer { realm, service } = self.challenge().await? else {
            return Ok(None);
        };
        let scope = format!("repository:{repo}:{actions}");
        let resp = self
            .fetch_token_as(&realm, &service, Some(cred), &[scope])
            .await?;
        let granted = access_of(resp.bearer().unwrap_or_default(), repo);
        if granted.is_none() {
            tracing::warn!(
                repository = repo,
                "the upstream realm's token has no readable access claim: no grant to read"
            );
        }
        Ok(granted)
    }
}

/// The actions a docker token (a JWT, read without checking its signature: it is TCR's answer
/// to this very request) grants on `repository:<repo>`; `None` when it is not a readable JWT.
fn access_of(token: &str, repo: &str) -> Option<Vec<String>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    Some(
        claims
            .access
            .into_iter()
            .filter(|a| a.typ == "repository" && a.name == repo)
            .flat_map(|a| a.actions)
            .collect(),
    )
}

/// Whether `granted` includes `action` (`*` includes every action).
pub fn permits(granted: &[String], action: &str) -> bool {
    granted.iter().any(|a| a == action || a == "*")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        let enc = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.sig",
            enc(br#"{"alg":"RS256"}"#),
            enc(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn the_access_claim_is_read_for_the_repository_asked() {
        let t = jwt(serde_json::json!({"access": [
            {"type": "repository", "name": "ns/other", "actions": ["delete"]},
            {"type": "repository", "name": "ns/app", "actions": ["pull"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ]}));
        let granted = access_of(&t, "ns/app").unwrap();
        assert_eq!(granted, ["pull"]);
        assert!(!permits(&granted, "delete"));
        let t = jwt(serde_json::json!({"access": [
            {"type": "repository", "name": "ns/app", "actions": []},
        ]}));
        assert_eq!(access_of(&t, "ns/app").unwrap(), Vec::<String>::new());
        let t = jwt(serde_json::json!({"access": [
            {"type": "repository", "name": "ns/app", "actions": ["*"]},
        ]}));
        assert!(permits(&access_of(&t, "ns/app").unwrap(), "delete"));
        assert_eq!(
            access_of(&jwt(serde_json::json!({})), "ns/app")
                .unwrap()
                .len(),
            0
        );
        assert!(access_of("not-a-jwt", "ns/app").is_none());
        assert!(access_of("a.!!!.c", "ns/app").is_none());
    }
}
