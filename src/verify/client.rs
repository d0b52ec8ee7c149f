//! A small reading client of a Docker/OCI registry (and of Harbor's JSON API on the same host):
//! answers `WWW-Authenticate` challenges (Bearer: a token from the realm with Basic credentials,
//! cached per scope; Basic: the credentials themselves), follows `Link` pagination, and reads
//! manifests by tag for their digest (and, when asked, their content).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use super::options::Creds;
use super::VerifyError;
use crate::upstream::error_chain;

/// Every manifest kind a registry may hold; asked for so nothing is converted on the way.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.v1+prettyjws";

/// A reading client of one registry host.
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    creds: Option<Creds>,
    /// Send Basic credentials before any challenge (Harbor's API lists only public projects
    /// to an anonymous caller instead of challenging).
    preemptive: bool,
    /// Authorization header value per scope key (`""` = catalog/API).
    auth: Mutex<HashMap<String, HeaderValue>>,
}

/// A manifest as stored: its digest, media type and bytes.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub body: bytes::Bytes,
}

impl RegistryClient {
    pub fn new(base: &str, creds: Option<Creds>, insecure: bool) -> Result<Self, VerifyError> {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(insecure)
            .pool_max_idle_per_host(64)
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| VerifyError::Source(format!("HTTP client: {e}")))?;
        Ok(RegistryClient {
            base: base.trim_end_matches('/').to_string(),
            http,
            creds,
            preemptive: false,
            auth: Mutex::new(HashMap::new()),
        })
    }

    /// Send Basic credentials up front (Harbor's API).
    pub fn preemptive_basic(mut self) -> Self {
        self.preemptive = true;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn basic(&self) -> Option<HeaderValue> {
        let c = self.creds.as_ref()?;
        let enc =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
        HeaderValue::from_str(&format!("Basic {enc}")).ok()
    }

    /// Send `method path` (path absolute from the host, or a full URL), answering one
    /// challenge. `scope_key` names the token cache entry (the repository, or "" for the rest).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        scope_key: &str,
    ) -> Result<reqwest::Response, VerifyError> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let cached = self.auth.lock().expect("auth lock").get(scope_key).cloned();
        let resp = self.once(&method, &url, accept, cached.clone()).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let Some(value) = self.answer(&challenge).await? else {
            return Ok(resp);
        };
        if cached.as_ref() == Some(&value) {
            return Ok(resp);
        }
        self.auth
            .lock()
            .expect("auth lock")
            .insert(scope_key.to_string(), value.clone());
        self.once(&method, &url, accept, Some(value)).await
    }

    async fn once(
        &self,
        method: &Method,
        url: &str,
        accept: Option<&str>,
        auth: Option<HeaderValue>,
    ) -> Result<reqwest::Response, VerifyError> {
        let mut headers = HeaderMap::new();
        if let Some(a) = accept {
            headers.insert(ACCEPT, HeaderValue::from_str(a).expect("static accept"));
        }
        if let Some(a) = auth.or_else(|| self.basic_preemptive()) {
            headers.insert(AUTHORIZATION, a);
        }
        self.http
            .request(method.clone(), url)
            .headers(headers)
            .send()
            .await
            .map_err(|e| VerifyError::Transport(url.to_string(), error_chain(&e)))
    }

    /// Harbor's API wants pre-emptive Basic; registries ignore it until they challenge.
    fn basic_preemptive(&self) -> Option<HeaderValue> {
        if self.preemptive {
            self.basic()
        } else {
            None
        }
    }

    /// The `Authorization` value answering a challenge, if any can.
    async fn answer(&self, challenge: &str) -> Result<Option<HeaderValue>, VerifyError> {
        let lower = challenge.to_ascii_lowercase();
        if lower.starts_with("basic") {
            return Ok(self.basic());
        }
        if !lower.starts_with("bearer") {
            return Ok(None);
        }
        let params: HashMap<String, String> = crate::upstream::challenge::params(&challenge[6..])
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let Some(realm) = params.get("realm") else {
            return Ok(None);
        };
        let mut url = url::Url::parse(realm)
            .map_err(|e| VerifyError::Source(format!("token realm {realm:?}: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = params.get("service") {
                q.append_pair("service", s);
            }
            if let Some(s) = params.get("scope") {
                for one in s.split(' ') {
                    q.append_pair("scope", one);
                }
            }
        }
        let mut req = self.http.get(url.as_str());
        if let Some(b) = self.basic() {
            req = req.header(AUTHORIZATION, b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| VerifyError::Transport(realm.clone(), error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(VerifyError::Auth(format!(
                "{realm} refused the credentials: HTTP {}",
                resp.status()
            )));
        }
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| VerifyError::Source(format!("token from {realm}: {e}")))?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| VerifyError::Source(format!("{realm} answered without a token")))?;
        Ok(HeaderValue::from_str(&format!("Bearer {token}")).ok())
    }

    /// GET a JSON document; `Ok(None)` on 404.
    pub async fn get_json(
        &self,
        path: &str,
        scope_key: &str,
    ) -> Result<Option<(serde_json::Value, Option<String>)>, VerifyError> {
        let resp = self.send(Method::GET, path, None, scope_key).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = ok_or_status(resp, path)?;
        let next = next_link(resp.headers());
        let v = resp
            .json()
            .await
            .map_err(|e| VerifyError::Source(format!("{path}: not JSON: {e}")))?;
        Ok(Some((v, next)))
    }

    /// Every repository in `/v2/_catalog` (paginated).
    pub async fn catalog(&self) -> Result<Vec<String>, VerifyError> {
        let mut out = Vec::new();
        let mut path = "/v2/_catalog?n=1000".to_string();
        loop {
            let Some((v, next)) = self.get_json(&path, "").await? else {
                return Err(VerifyError::Source(format!(
                    "{}/v2/_catalog is not served (404): the registry does not list its repositories; try --source-kind harbor",
                    self.base
                )));
            };
            out.extend(strings(&v, "repositories"));
            match next {
                Some(n) => path = n,
                None => return Ok(out),
            }
        }
    }

    /// Every tag of `repo` (paginated); a missing repository has none.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, VerifyError> {
        let mut out = Vec::new();
        let mut path = format!("/v2/{repo}/tags/list?n=1000");
        loop {
            let Some((v, next)) = self.get_json(&path, repo).await? else {
                return Ok(out);
            };
            out.extend(strings(&v, "tags"));
            match next {
                Some(n) => path = n,
                None => return Ok(out),
            }
        }
    }

    /// The digest of `repo:reference` as stored (HEAD; GET when the registry gives no digest).
    pub async fn manifest_digest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<String>, VerifyError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let resp = self
            .send(Method::HEAD, &path, Some(MANIFEST_ACCEPT), repo)
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = ok_or_status(resp, &path)?;
        if let Some(d) = digest_header(resp.headers()) {
            return Ok(Some(d));
        }
        Ok(self.manifest(repo, reference).await?.map(|m| m.digest))
    }

    /// The manifest `repo:reference` as stored.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Manifest>, VerifyError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let resp = self
            .send(Method::GET, &path, Some(MANIFEST_ACCEPT), repo)
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = ok_or_status(resp, &path)?;
        let media_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp
            .bytes()
            .await
            .map_err(|e| VerifyError::Transport(path.clone(), error_chain(&e)))?;
        let digest = format!("sha256:{}", hex::encode(openssl::sha::sha256(&body)));
        Ok(Some(Manifest {
            digest,
            media_type,
            body,
        }))
    }
}

fn digest_header(h: &HeaderMap) -> Option<String> {
    h.get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A non-success status as an error naming the URL (401/403: the credentials).
pub fn ok_or_status(resp: reqwest::Response, what: &str) -> Result<reqwest::Response, VerifyError> {
    let s = resp.status();
    if s.is_success() {
        return Ok(resp);
    }
    if s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN {
        return Err(VerifyError::Auth(format!(
            "{what}: HTTP {s} (check the credentials and what they may read)"
        )));
    }
    Err(VerifyError::Source(format!("{what}: HTTP {s}")))
}

fn strings(v: &serde_json::Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(h: &HeaderMap) -> Option<String> {
    let v = h.get(reqwest::header::LINK)?.to_str().ok()?;
    v.split(',').find_map(|part| {
        let (target, rest) = part.trim().split_once(';')?;
        rest.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parameters_and_next_links_parse() {
        let p: HashMap<String, String> = crate::upstream::challenge::params(
            r#"realm="http://h/service/token",service="harbor-registry",scope="repository:a/b:pull""#,
        )
        .into_iter()
        .collect();
        assert_eq!(p["realm"], "http://h/service/token");
        assert_eq!(p["scope"], "repository:a/b:pull");
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static("</v2/_catalog?last=b&n=2>; rel=\"next\""),
        );
        assert_eq!(next_link(&h).as_deref(), Some("/v2/_catalog?last=b&n=2"));
    }
}
