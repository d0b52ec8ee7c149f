//! An upload chunk's `Content-Range` as clients send it on `PATCH` (and Harbor on its final
//! `PUT`): `<start>-<end>`, inclusive, with a `bytes ` / `bytes=` prefix and a `/<size>` suffix
//! tolerated. Read by the adapter (streamed chunks) and the emulator alike.

/// `(start, end)`, or `None` when the value is not a range (or ends before it starts).
pub fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let s = value.trim();
    let s = s
        .strip_prefix("bytes ")
        .or_else(|| s.strip_prefix("bytes="))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b: u64 = b.trim().parse().ok()?;
    (b >= a).then_some((a, b))
}

/// The request's `Content-Range` header: `None` without one, `416 RANGE_INVALID` for one that
/// is not `<start>-<end>`.
pub fn content_range(
    headers: &actix_web::http::header::HeaderMap,
) -> Result<Option<(u64, u64)>, super::OciError> {
    let Some(v) = headers.get("content-range") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(parse_content_range)
        .map(Some)
        .ok_or_else(|| {
            super::OciError::new(
                super::ErrorCode::RangeInvalid,
                "Content-Range must be <start>-<end>",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_clients_send_them() {
        assert_eq!(parse_content_range("0-1023"), Some((0, 1023)));
        assert_eq!(
            parse_content_range("bytes 1024-2047/4096"),
            Some((1024, 2047))
        );
        assert_eq!(parse_content_range("bytes=5-5"), Some((5, 5)));
        assert_eq!(parse_content_range("9-3"), None);
        assert_eq!(parse_content_range("-3"), None);
        assert_eq!(parse_content_range("a-b"), None);
        assert_eq!(parse_content_range(""), None);
    }
}
