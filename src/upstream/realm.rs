//! The upstream's token realm: `GET <realm>?service=..&scope=..` with Basic credentials (or
//! anonymously), retried while the realm is throttled, failing or unreachable, and the answer
//! checked into a [`TokenResponse`]. Caching and single flight live in `mod.rs`.

use bytes::Bytes;
use reqwest::header::AUTHORIZATION;
use reqwest::StatusCode;

use super::{
    error_message, retry_after, retryable_status, strip_query, unreachable, BasicAuth,
    TokenResponse, UpstreamClient, UpstreamError,
};

impl UpstreamClient {
    /// Ask the realm for a token (no cache).
    pub async fn fetch_token(
        &self,
        realm: &str,
        service: &str,
        cred: &BasicAuth,
        scopes: &[String],
    ) -> Result<TokenResponse, UpstreamError> {
        self.fetch_token_as(realm, service, Some(cred), scopes)
            .await
    }

    /// Ask the realm for a token as `cred`, or anonymously (no `Authorization`) when `None`.
    pub(super) async fn fetch_token_as(
        &self,
        realm: &str,
        service: &str,
        cred: Option<&BasicAuth>,
        scopes: &[String],
    ) -> Result<TokenResponse, UpstreamError> {
        let mut url = url::Url::parse(realm).map_err(|e| UpstreamError::Realm {
            url: realm.to_string(),
            status: 0,
            message: format!("bad realm URL: {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            if !service.is_empty() {
                q.append_pair("service", service);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let (status, body) = self.realm_request(&url, cred).await?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(UpstreamError::CredentialRejected {
                realm: realm.to_string(),
                username: cred.map_or_else(|| "(anonymous)".into(), |c| c.username.clone()),
                message: error_message(&body),
            });
        }
        if !status.is_success() {
            return Err(UpstreamError::Realm {
                url: realm.to_string(),
                status: status.as_u16(),
                message: error_message(&body),
            });
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| UpstreamError::Realm {
                url: realm.to_string(),
                status: status.as_u16(),
                message: format!("not a token response: {e}"),
            })?;
        if parsed.bearer().is_none() {
            return Err(UpstreamError::Realm {
                url: realm.to_string(),
                status: status.as_u16(),
                message: "empty token".into(),
            });
        }
        Ok(parsed)
    }

    /// `GET` the realm, retrying a realm that is throttled, failing or unreachable: a realm 503
    /// must not become the client's 502 on an unrelated blob request.
    async fn realm_request(
        &self,
        url: &url::Url,
        cred: Option<&BasicAuth>,
    ) -> Result<(StatusCode, Bytes), UpstreamError> {
        let realm = url.as_str();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut get = self.http.get(url.clone());
            if let Some(c) = cred {
                get = get.header(AUTHORIZATION, c.header());
            }
            let started = std::time::Instant::now();
            let sent = get.send().await;
            tracing::debug!(
                ms = started.elapsed().as_millis() as u64,
                query = url.query().unwrap_or(""),
                "upstream realm call"
            );
            let result = match sent {
                Ok(resp) => {
                    let status = resp.status();
                    let wait = retry_after(resp.headers());
                    resp.bytes().await.map(|b| (status, b, wait))
                }
                Err(e) => Err(e),
            };
            let cause = match &result {
                Ok((status, body, _)) if !retryable_status(status.as_u16()) => {
                    return Ok((*status, body.clone()))
                }
                Ok((status, _, _)) => format!("realm_{}", status.as_u16()),
                Err(_) => "realm_network".to_string(),
            };
            let wait = result.as_ref().ok().and_then(|r| r.2);
            if !self.may_retry(&cause, Ok(()), attempt) {
                return match result {
                    Ok((status, body, _)) => Ok((status, body)),
                    Err(e) => Err(unreachable(strip_query(realm).as_str(), &e)),
                };
            }
            tokio::time::sleep(self.backoff(attempt, wait)).await;
        }
    }
}
