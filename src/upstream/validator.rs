//! [`RegistryCredentialValidator`] over the upstream realm: `GET /v2/` without credentials to
//! learn the challenge, then `GET realm?service=…` (no scope) with the Basic credential.
//! 200 = valid; 401/403 = "bad registry password".

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{BasicAuth, Challenge, UpstreamClient, UpstreamError};
use crate::credentials::{RegistryCredentialValidator, UpstreamCredential};

/// Validates registry credentials against the upstream's own token realm.
pub struct RealmValidator {
    client: Arc<UpstreamClient>,
}

impl RealmValidator {
    pub fn new(client: Arc<UpstreamClient>) -> Self {
        RealmValidator { client }
    }

    async fn check(&self, cred: &UpstreamCredential) -> Result<(), String> {
        let basic = BasicAuth {
            username: cred.username.clone(),
            password: cred.password.clone(),
        };
        match self.client.challenge().await.map_err(|e| e.to_string())? {
            Challenge::None => Ok(()),
            Challenge::Basic => {
                let url = format!("{}/v2/", self.client.base());
                let resp = self
                    .client
                    .http
                    .get(&url)
                    .header(reqwest::header::AUTHORIZATION, basic.header())
                    .send()
                    .await
                    .map_err(|e| super::unreachable(&url, &e).to_string())?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(format!(
                        "bad registry password: the upstream registry answered {}",
                        resp.status()
                    ))
                }
            }
            Challenge::Bearer { realm, service } => {
                match self.client.fetch_token(&realm, &service, &basic, &[]).await {
                    Ok(_) => Ok(()),
                    Err(UpstreamError::CredentialRejected { message, .. }) => {
                        Err(format!("bad registry password: {message}"))
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }
}

impl RegistryCredentialValidator for RealmValidator {
    fn validate<'a>(
        &'a self,
        cred: &'a UpstreamCredential,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(self.check(cred))
    }
}
