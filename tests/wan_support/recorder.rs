//! A tiny registry that records what a client sends (for the Harbor client's own tests): a 401
//! bearer challenge on an unauthenticated `GET /v2/`, a token realm that notes the scopes of
//! every token it issues, 404 for manifest and blob HEADs, upload sessions whose `Location`
//! carries a query needing percent-encoding, 201 for PUTs. HTTP/1.1 with keep-alive, bodies by
//! `Content-Length` or chunked transfer encoding. Listens on 127.0.0.1 only.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    /// Scopes of the n-th token issued (its value is `tok-<n>`).
    issued: Vec<Vec<String>>,
    uploads: usize,
}

pub struct Recorder {
    pub base: String,
    state: Arc<Mutex<State>>,
}

/// The `_state` query every upload Location carries (`/` and `=` must be encoded by Go's
/// `url.Values.Encode`).
pub const STATE: &str = "ab%2Fc%3D%3D";

impl Recorder {
    /// A recorder whose tokens say `expires_in` seconds, issued now.
    pub async fn start(expires_in: i64) -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let (st, b) = (state.clone(), base.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                tokio::spawn(serve(sock, st.clone(), b.clone(), expires_in));
            }
        });
        Recorder { base, state }
    }

    /// Registry requests (the token realm's excluded), in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        let s = self.state.lock().unwrap();
        s.seen
            .iter()
            .filter(|r| !r.target.starts_with("/token"))
            .cloned()
            .collect()
    }

    /// The scopes of every token issued, in order.
    pub fn issued(&self) -> Vec<Vec<String>> {
        self.state.lock().unwrap().issued.clone()
    }

    /// The scopes of the token a request carried (`None`: no bearer token).
    pub fn scopes_of(&self, r: &Seen) -> Option<Vec<String>> {
        let t = r.header("authorization")?.strip_prefix("Bearer tok-")?;
        let n: usize = t.parse().ok()?;
        self.state.lock().unwrap().issued.get(n).cloned()
    }
}

async fn serve(sock: TcpStream, state: Arc<Mutex<State>>, base: String, expires_in: i64) {
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::new(rd);
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            rd.read_line(&mut h).await.unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').unwrap();
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut body_len = 0;
        if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                rd.read_line(&mut size).await.unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut buf = vec![0; n + 2];
                rd.read_exact(&mut buf).await.unwrap();
                body_len += n;
                if n == 0 {
                    break;
                }
            }
        } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            let mut buf = vec![0; n];
            rd.read_exact(&mut buf).await.unwrap();
            body_len = n;
        }
        let seen = Seen {
            method: method.clone(),
            target: target.clone(),
            headers: headers.clone(),
            body_len,
        };
        let path = target.split('?').next().unwrap_or("").to_string();
        let (status, extra, body) = {
            let mut st = state.lock().unwrap();
            st.seen.push(seen);
            answer(
                &mut st,
                &method,
                &target,
                &path,
                &base,
                expires_in,
                get("authorization"),
            )
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\n{extra}Content-Length: {}\r\n\r\n",
            body.len()
        );
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        if method != "HEAD" && wr.write_all(body.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn answer(
    st: &mut State,
    method: &str,
    target: &str,
    path: &str,
    base: &str,
    expires_in: i64,
    auth: Option<String>,
) -> (u16, String, String) {
    if path == "/v2/" && auth.is_none() {
        let chal =
            format!("WWW-Authenticate: Bearer realm=\"{base}/token\",service=\"recorder\"\r\n");
        return (401, chal, String::new());
    }
    if path == "/token" {
        let u = url::Url::parse(&format!("{base}{target}")).unwrap();
        let scopes = u
            .query_pairs()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.into_owned())
            .collect();
        st.issued.push(scopes);
        let n = st.issued.len() - 1;
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let body = serde_json::json!({
            "token": format!("tok-{n}"), "access_token": format!("tok-{n}"),
            "expires_in": expires_in, "issued_at": at,
        })
        .to_string();
        return (200, "Content-Type: application/json\r\n".into(), body);
    }
    let upload_at = |p: &str| format!("Location: {p}?_state={STATE}\r\n");
    match method {
        "HEAD" => (404, String::new(), String::new()),
        "POST" if path.ends_with("/blobs/uploads") || path.ends_with("/blobs/uploads/") => {
            st.uploads += 1;
            let p = format!("{}/u{}", path.trim_end_matches('/'), st.uploads);
            (202, upload_at(&p), String::new())
        }
        "PATCH" => (202, upload_at(path), String::new()),
        "PUT" => (201, String::new(), String::new()),
        "DELETE" => (202, String::new(), String::new()),
        _ => (404, String::new(), String::new()),
    }
}
