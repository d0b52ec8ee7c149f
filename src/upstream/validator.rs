//! [`RegistryCredentialValidator`] over the upstream realm: `GET /v2/` without credentials to
//! learn the challenge, then `GET realm?service=…` (no scope) with the Basic credential.
//! 200 = valid; 401/403 = "bad registry password" ([`ValidationFailure::Rejected`]); no answer,
//! a 5xx or an unusable answer = [`ValidationFailure::Unavailable`] (the token endpoint then
//! says 503 with `Retry-After`, never that a possibly good password is wrong).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{BasicAuth, Challenge, UpstreamClient, UpstreamError};
use crate::credentials::{
    BoxFuture, RegistryCredentialValidator, UpstreamCredential, ValidationFailure,
};

/// Validates registry credentials against the upstream's own token realm.
pub struct RealmValidator {
    client: Arc<UpstreamClient>,
}

impl RealmValidator {
    pub fn new(client: Arc<UpstreamClient>) -> Self {
        RealmValidator { client }
    }

    async fn check(&self, cred: &UpstreamCredential) -> Result<(), ValidationFailure> {
        let basic = BasicAuth {
            username: cred.username.clone(),
            password: cred.password.clone(),
        };
        let unavailable = |e: UpstreamError| ValidationFailure::Unavailable(e.to_string());
        match self.client.challenge().await.map_err(unavailable)? {
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
                    .map_err(|e| unavailable(super::unreachable(&url, &e)))?;
                let status = resp.status();
                if status.is_success() {
                    Ok(())
                } else if status.is_server_error() || status.as_u16() == 429 {
                    Err(ValidationFailure::Unavailable(format!(
                        "the upstream registry answered {status}"
                    )))
                } else {
                    Err(ValidationFailure::Rejected(format!(
                        "bad registry password: the upstream registry answered {status}"
                    )))
                }
            }
            Challenge::Bearer { realm, service } => {
                match self.client.fetch_token(&realm, &service, &basic, &[]).await {
                    Ok(_) => Ok(()),
                    Err(UpstreamError::CredentialRejected { message, .. }) => Err(
                        ValidationFailure::Rejected(format!("bad registry password: {message}")),
                    ),
                    Err(e) => Err(unavailable(e)),
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
        Box::pin(async move {
            self.check(cred).await.map_err(|f| match f {
                ValidationFailure::Rejected(why) | ValidationFailure::Unavailable(why) => why,
            })
        })
    }

    fn validate_detailed<'a>(
        &'a self,
        cred: &'a UpstreamCredential,
    ) -> BoxFuture<'a, Result<(), ValidationFailure>> {
        Box::pin(self.check(cred))
    }
}
