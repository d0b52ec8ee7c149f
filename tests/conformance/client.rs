//! A port of the HTTP behaviour of `bloodorangeio/reggie@v0.6.1` (on resty v2.7), the client of
//! the OCI conformance suite: requests are built from path templates against the root URL, query
//! parameters set on a request are appended (Go `url.Values` encoding, sorted by key) after any
//! raw query already in the path, and no token is cached — every request first goes out without
//! credentials, and a 401 triggers exactly one retry after a token fetch from the challenge realm.

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};

pub struct Reggie {
    http: reqwest::Client,
    base: String,
    /// The default `<name>` (OCI_NAMESPACE).
    pub name: String,
    user: String,
    pass: String,
}

/// One request, like `client.NewRequest(method, path, opts...)` plus its `Set*` calls.
pub struct Req {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Req {
    pub fn query(mut self, k: &str, v: &str) -> Req {
        self.query.retain(|(qk, _)| qk != k);
        self.query.push((k.into(), v.into()));
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn body(mut self, b: &[u8]) -> Req {
        self.body = Some(b.to_vec());
        self
    }
    /// Blob bytes as the suite sends them: `Content-Type: application/octet-stream`, their
    /// `Content-Length`, the body.
    pub fn octet(self, b: &[u8]) -> Req {
        self.header("Content-Type", "application/octet-stream")
            .header("Content-Length", &b.len().to_string())
            .body(b)
    }
    /// A whole blob for a monolithic upload: `?digest=` and its bytes ([`Req::octet`]).
    pub fn whole_blob(self, b: &crate::fixtures::TestBlob) -> Req {
        self.query("digest", &b.digest).octet(&b.content)
    }
}

/// `/v2/<name>/blobs/<digest>`.
pub fn blob_path(digest: &str) -> String {
    format!("/v2/<name>/blobs/{digest}")
}

/// `/v2/<name>/manifests/<reference>`.
pub fn manifest_path(reference: &str) -> String {
    format!("/v2/<name>/manifests/{reference}")
}

/// A received response, body read in full (the suite only moves small bodies).
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn code(&self) -> u16 {
        self.status.as_u16()
    }
    /// `resp.Header().Get(name)`: the first value or "".
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }
    /// reggie `GetRelativeLocation`: the path and raw query of `Location`, host dropped.
    pub fn relative_location(&self) -> String {
        let loc = self.header("Location");
        if loc.is_empty() {
            return String::new();
        }
        match url::Url::parse(&loc) {
            Ok(u) => match u.query() {
                Some(q) if !q.is_empty() => format!("{}?{}", u.path(), q),
                _ => u.path().to_string(),
            },
            // Already relative.
            Err(_) => loc,
        }
    }
    /// reggie `GetAbsoluteLocation`: `Location` resolved against the request URL.
    pub fn absolute_location(&self) -> String {
        self.header("Location")
    }
    /// reggie `Errors()`: the `errors` array of an OCI error body.
    pub fn error_codes(&self) -> Result<Vec<String>, String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .map_err(|e| format!("error body is not JSON ({e}): {}", self.text()))?;
        let errs = v["errors"]
            .as_array()
            .ok_or_else(|| format!("no `errors` array in {}", self.text()))?;
        Ok(errs
            .iter()
            .map(|e| e["code"].as_str().unwrap_or("").to_string())
            .collect())
    }
    pub fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        if s.len() > 300 {
            format!("{}…", &s[..300])
        } else {
            s.into_owned()
        }
    }
    /// A one-line description for failure messages.
    pub fn describe(&self) -> String {
        let mut hs: Vec<String> = ["location", "range", "content-type", "www-authenticate"]
            .iter()
            .filter_map(|h| {
                self.headers
                    .get(*h)
                    .map(|v| format!("{h}: {}", v.to_str().unwrap_or("?")))
            })
            .collect();
        hs.retain(|h| !h.is_empty());
        format!("{} [{}] {}", self.status, hs.join("; "), self.text())
    }
}

/// Go `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go `url.Values.Encode`: sorted by key.
fn encode_values(q: &[(String, String)]) -> String {
    let mut q = q.to_vec();
    q.sort_by(|a, b| a.0.cmp(&b.0));
    q.iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The `key="value"` pairs of a `WWW-Authenticate` header (reggie's regex parse).
fn challenge_params(h: &str) -> (String, Vec<(String, String)>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = Vec::new();
    let mut s = rest;
    while let Some(eq) = s.find("=\"") {
        let key = s[..eq]
            .trim_start_matches([',', ' '])
            .trim()
            .to_ascii_lowercase();
        let after = &s[eq + 2..];
        let Some(end) = after.find('"') else { break };
        params.push((key, after[..end].to_string()));
        s = &after[end + 1..];
    }
    (scheme.to_ascii_lowercase(), params)
}

impl Reggie {
    pub fn new(base: &str, ca_pem: Option<&[u8]>, name: &str, user: &str, pass: &str) -> Reggie {
        let mut b = reqwest::Client::builder().user_agent("distribution-spec-conformance-tests");
        if let Some(pem) = ca_pem {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap());
        }
        Reggie {
            http: b.build().unwrap(),
            base: base.trim_end_matches('/').to_string(),
            name: name.to_string(),
            user: user.to_string(),
            pass: pass.to_string(),
        }
    }

    /// `client.NewRequest(method, path)` with `<name>` replaced by the default name.
    pub fn req(&self, method: Method, path: &str) -> Req {
        self.req_named(method, path, &self.name)
    }

    /// `client.NewRequest(method, path, reggie.WithName(name))`.
    pub fn req_named(&self, method: Method, path: &str, name: &str) -> Req {
        Req {
            method,
            path: path.replace("<name>", name),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
        }
    }

    fn url(&self, r: &Req) -> String {
        let mut url = format!("{}{}", self.base, r.path);
        if !r.query.is_empty() {
            url.push(if r.path.contains('?') { '&' } else { '?' });
            url.push_str(&encode_values(&r.query));
        }
        url
    }

    async fn send(&self, r: &Req, auth: Option<&str>) -> Result<Resp, String> {
        let url = self.url(r);
        let mut b = self.http.request(r.method.clone(), &url);
        let mut h = HeaderMap::new();
        for (k, v) in &r.headers {
            // Go's transport writes Content-Length from the body it really has.
            if k.eq_ignore_ascii_case("content-length") {
                continue;
            }
            h.append(
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?,
                HeaderValue::from_str(v).map_err(|e| e.to_string())?,
            );
        }
        if let Some(a) = auth {
            h.insert("authorization", HeaderValue::from_str(a).unwrap());
        }
        b = b.headers(h);
        // resty drops a GET payload (AllowGetMethodPayload is off).
        match (&r.body, r.method == Method::GET || r.method == Method::HEAD) {
            (Some(body), false) => b = b.body(body.clone()),
            _ => {
                if [Method::POST, Method::PUT, Method::PATCH].contains(&r.method) {
                    b = b.header("Content-Length", "0");
                }
            }
        }
        let resp = b
            .send()
            .await
            .map_err(|e| format!("{} {url}: {e}", r.method))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("{} {url}: body: {e}", r.method))?
            .to_vec();
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    /// `client.Do(client.NewRequest(method, path))`: a request with nothing more set.
    pub async fn call(&self, method: Method, path: &str) -> Result<Resp, String> {
        self.go(self.req(method, path)).await
    }

    /// `client.Do(req)`: unauthenticated first, one retry with credentials on a 401.
    pub async fn go(&self, r: Req) -> Result<Resp, String> {
        let first = self.send(&r, None).await?;
        if first.status != StatusCode::UNAUTHORIZED {
            return Ok(first);
        }
        let challenge = first.header("WWW-Authenticate");
        let (scheme, params) = challenge_params(&challenge);
        let auth = if scheme == "bearer" {
            let get = |k: &str| {
                params
                    .iter()
                    .find(|(pk, _)| pk == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let realm = get("realm");
            if realm.is_empty() {
                return Err(format!("401 without a Bearer realm: {challenge:?}"));
            }
            let mut q = vec![("service".to_string(), get("service"))];
            let scope = get("scope");
            if !scope.is_empty() {
                q.push(("scope".to_string(), scope));
            }
            let sep = if realm.contains('?') { '&' } else { '?' };
            let token_url = format!("{realm}{sep}{}", encode_values(&q));
            let cred = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", self.user, self.pass));
            let tr = self
                .http
                .get(&token_url)
                .header("Authorization", format!("Basic {cred}"))
                .send()
                .await
                .map_err(|e| format!("token GET {token_url}: {e}"))?;
            let ts = tr.status();
            let tb = tr.text().await.unwrap_or_default();
            if !ts.is_success() {
                return Err(format!("token GET {token_url}: {ts} {tb}"));
            }
            let v: serde_json::Value = serde_json::from_str(&tb)
                .map_err(|e| format!("token response is not JSON ({e}): {tb}"))?;
            let token = v["token"]
                .as_str()
                .filter(|t| !t.is_empty())
                .or_else(|| v["access_token"].as_str())
                .unwrap_or("");
            format!("Bearer {token}")
        } else {
            let cred = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", self.user, self.pass));
            format!("Basic {cred}")
        };
        self.send(&r, Some(&auth)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_query_encoding() {
        let q = vec![
            ("mount".to_string(), "sha256:ab".to_string()),
            ("from".to_string(), "ns/repo x".to_string()),
        ];
        assert_eq!(encode_values(&q), "from=ns%2Frepo+x&mount=sha256%3Aab");
    }

    #[test]
    fn challenge_parse() {
        let (s, p) = challenge_params(
            r#"Bearer realm="http://h/service/token",service="svc",scope="repository:a/b:pull,push repository:c/d:pull""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p[0], ("realm".into(), "http://h/service/token".into()));
        assert_eq!(p[1], ("service".into(), "svc".into()));
        assert_eq!(
            p[2].1,
            "repository:a/b:pull,push repository:c/d:pull".to_string()
        );
    }
}
