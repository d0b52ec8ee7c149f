//! Parsing of `WWW-Authenticate` challenges (RFC 7235 auth-params) as registries send them:
//! `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.

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
