//! Parsing of `WWW-Authenticate` challenges (RFC 7235 auth-params) as registries send them:
//! `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`; the upstream's own challenge,
//! learnt once from `GET /v2/` ([`UpstreamClient::challenge`]), ahead at startup
//! ([`UpstreamClient::warm_up`]).

use reqwest::StatusCode;

use super::{retry_after, retryable_status, unreachable, UpstreamClient, UpstreamError};

/// How the upstream registry wants to be authenticated, learnt from `GET /v2/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `GET /v2/` answered 2xx without credentials: send no `Authorization`.
    None,
    /// Basic credentials on every request.
    Basic,
    /// Docker token auth: fetch tokens from `realm` for `service`.
    Bearer { realm: String, service: String },
}

/// Parse one `WWW-Authenticate` value. Unknown schemes give `None`.
pub fn parse(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let params = params(rest);
            let get = |k: &str| {
                params
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
            };
            Some(Challenge::Bearer {
                realm: get("realm")?,
                service: get("service").unwrap_or_default(),
            })
        }
        _ => None,
    }
}

/// `k="v",k2=v2` pairs; quoted values may contain commas and `\"`.
pub fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n)
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
    out
}

impl UpstreamClient {
    /// The upstream's challenge, learnt once from `GET /v2/` without credentials.
    pub async fn challenge(&self) -> Result<Challenge, UpstreamError> {
        if let Some(c) = self
            .challenge
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(c);
        }
        let url = format!("{}/v2/", self.base);
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let (cause, wait) = match self.http.get(&url).send().await {
                Ok(r) if retryable_status(r.status().as_u16()) => {
                    (r.status().as_str().to_string(), retry_after(r.headers()))
                }
                Ok(r) => break r,
                Err(e) if attempt >= self.retry.attempts => return Err(unreachable(&url, &e)),
                Err(_) => ("network".to_string(), None),
            };
            if !self.may_retry(&format!("challenge_{cause}"), Ok(()), attempt) {
                return Err(UpstreamError::Unreachable {
                    url,
                    reason: format!("GET /v2/ answered {cause}"),
                });
            }
            tokio::time::sleep(self.backoff(attempt, wait)).await;
        };
        let Some(c) = of_response(&resp) else {
            return Err(UpstreamError::Unreachable {
                url,
                reason: format!("GET /v2/ answered {}", resp.status()),
            });
        };
        *self.challenge.write().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// Learn the challenge now, with one `GET /v2/` and no retry, so that the first client
    /// request does not wait for it (at startup: a long-running adapter has always learnt it).
    /// A failure is left to the first request, which asks again with the retry policy.
    pub async fn warm_up(&self) {
        if self
            .challenge
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return;
        }
        let url = format!("{}/v2/", self.base);
        match self.http.get(&url).send().await {
            Ok(resp) => match of_response(&resp) {
                Some(c) => *self.challenge.write().unwrap_or_else(|e| e.into_inner()) = Some(c),
                None => {
                    tracing::debug!(status = %resp.status(), "upstream challenge not learnt at startup")
                }
            },
            Err(e) => tracing::debug!(error = %e, "upstream challenge not learnt at startup"),
        }
    }
}

/// The challenge a `GET /v2/` answer carries: a 401's `WWW-Authenticate` (Bearer preferred),
/// none for a success; `None` for anything else (the upstream is not answering as a registry).
fn of_response(resp: &reqwest::Response) -> Option<Challenge> {
    if resp.status() == StatusCode::UNAUTHORIZED {
        let c = resp
            .headers()
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse)
            .max_by_key(|c| matches!(c, Challenge::Bearer { .. }))
            .unwrap_or(Challenge::None);
        Some(c)
    } else if resp.status().is_success() {
        Some(Challenge::None)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic() {
        assert_eq!(
            parse(
                r#"Bearer realm="http://h/service/token",service="harbor-registry",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "http://h/service/token".into(),
                service: "harbor-registry".into()
            })
        );
        assert_eq!(parse(r#"basic realm="x""#), Some(Challenge::Basic));
        assert_eq!(parse("Negotiate"), None);
        assert_eq!(parse("Bearer service=x"), None);
    }
}
