//! What the emulator's chart repository checks in an uploaded archive before it stores it, as
//! ChartMuseum does: a gzip stream (`1f 8b`), a tar inside, a `<dir>/Chart.yaml` with a valid
//! `name` and a semantic `version`. Reads files only; knows nothing of HTTP or storage layout.

use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

/// Largest `Chart.yaml` / `values.yaml` read from an archive.
const MAX_META_FILE: u64 = 1 << 20;

/// Why an archive is not an acceptable chart (each a 400 for the uploader).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArchiveError {
    #[error("gzip: invalid header: the chart is not a gzip-compressed archive (.tgz)")]
    NotGzip,
    #[error("the chart archive is not a readable tar inside gzip: {0}")]
    NotTar(String),
    #[error("no Chart.yaml found in the chart archive (expected <chart>/Chart.yaml)")]
    NoChartYaml,
    #[error("Chart.yaml is not valid YAML: {0}")]
    BadChartYaml(String),
    #[error("Chart.yaml: invalid chart name {0:?} (letters, digits, '.', '_' and '-' only)")]
    BadName(String),
    #[error("Chart.yaml: version {0:?} is not a valid semantic version")]
    BadVersion(String),
    #[error("reading the chart archive: {0}")]
    Io(String),
}

/// The facts of one chart version taken from its archive.
#[derive(Debug, Clone)]
pub struct ChartFacts {
    pub name: String,
    pub version: String,
    /// `Chart.yaml` as JSON (field names as Helm writes them).
    pub chart_yaml: Map<String, Value>,
    /// `values.yaml` parsed (an empty object when absent or unreadable).
    pub values: Value,
    /// Raw `values.yaml` text, for the detail's `files`.
    pub values_text: Option<String>,
}

/// Inspect the archive stored at `path` (blocking: call from `spawn_blocking`).
pub fn inspect(path: &Path) -> Result<ChartFacts, ArchiveError> {
    let mut f = std::fs::File::open(path).map_err(|e| ArchiveError::Io(e.to_string()))?;
    let mut magic = [0u8; 2];
    if f.read_exact(&mut magic).is_err() || magic != [0x1f, 0x8b] {
        return Err(ArchiveError::NotGzip);
    }
    let f = std::fs::File::open(path).map_err(|e| ArchiveError::Io(e.to_string()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let entries = tar
        .entries()
        .map_err(|e| ArchiveError::NotTar(e.to_string()))?;
    let mut chart_yaml = None;
    let mut values_text = None;
    for entry in entries {
        let entry = entry.map_err(|e| ArchiveError::NotTar(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| ArchiveError::NotTar(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = path.trim_start_matches("./").split('/').collect();
        let wanted = parts.len() == 2 && matches!(parts[1], "Chart.yaml" | "values.yaml");
        if !wanted || entry.size() > MAX_META_FILE {
            continue;
        }
        let file = parts[1].to_string();
        let mut text = String::new();
        entry
            .take(MAX_META_FILE)
            .read_to_string(&mut text)
            .map_err(|e| ArchiveError::NotTar(e.to_string()))?;
        if file == "Chart.yaml" && chart_yaml.is_none() {
            chart_yaml = Some(text);
        } else if file == "values.yaml" && values_text.is_none() {
            values_text = Some(text);
        }
        if chart_yaml.is_some() && values_text.is_some() {
            break;
        }
    }
    let text = chart_yaml.ok_or(ArchiveError::NoChartYaml)?;
    facts(&text, values_text)
}

fn facts(chart_yaml: &str, values_text: Option<String>) -> Result<ChartFacts, ArchiveError> {
    let parsed: Value =
        serde_yaml::from_str(chart_yaml).map_err(|e| ArchiveError::BadChartYaml(e.to_string()))?;
    let Value::Object(map) = parsed else {
        return Err(ArchiveError::BadChartYaml("not a mapping".into()));
    };
    let field = |k: &str| match map.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let name = field("name");
    if !valid_name(&name) {
        return Err(ArchiveError::BadName(name));
    }
    let version = field("version");
    if !valid_version(&version) {
        return Err(ArchiveError::BadVersion(version));
    }
    let values = values_text
        .as_deref()
        .and_then(|t| serde_yaml::from_str::<Value>(t).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Map::new()));
    Ok(ChartFacts {
        name,
        version,
        chart_yaml: map,
        values,
        values_text,
    })
}

/// A chart name usable as one path segment (Helm: no path separators; ChartMuseum keeps case).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 250
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A semantic version as Helm accepts it (`1.2.3`, `v1.2`, `1.0.0-rc.1+build.5`).
pub fn valid_version(v: &str) -> bool {
    let v = v.strip_prefix('v').unwrap_or(v);
    if v.is_empty() || v.len() > 128 {
        return false;
    }
    let (core, rest) = match v.find(['-', '+']) {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, ""),
    };
    let nums: Vec<&str> = core.split('.').collect();
    let core_ok = (1..=3).contains(&nums.len())
        && nums
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let rest_ok = rest
        .chars()
        .skip(1)
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
        && rest.len() != 1;
    core_ok && rest_ok
}

/// Order two versions newest first (numeric core, then a release before its pre-releases).
pub fn newest_first(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(v: &str) -> (Vec<u64>, bool, String) {
        let v = v.strip_prefix('v').unwrap_or(v);
        let (core, pre) = match v.find('-') {
            Some(i) => (
                &v[..i],
                v[i + 1..].split('+').next().unwrap_or("").to_string(),
            ),
            None => (v.split('+').next().unwrap_or(v), String::new()),
        };
        let mut nums: Vec<u64> = core.split('.').map(|n| n.parse().unwrap_or(0)).collect();
        nums.resize(3, 0);
        (nums, pre.is_empty(), pre)
    }
    key(b).cmp(&key(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in ["1.2.3", "v1.2", "0.1.0-rc.1+build.5", "10"] {
            assert!(valid_version(ok), "{ok}");
        }
        for bad in ["", "a.b.c", "1..2", "1.2.3.4", "1.0-", "1.0.0/x"] {
            assert!(!valid_version(bad), "{bad}");
        }
        let mut v = vec!["1.0.0-rc.1", "0.9.0", "1.0.0", "1.10.0", "1.2.0"];
        v.sort_by(|a, b| newest_first(a, b));
        assert_eq!(v, ["1.10.0", "1.2.0", "1.0.0", "1.0.0-rc.1", "0.9.0"]);
    }

    #[test]
    fn names() {
        assert!(valid_name("nginx-ingress_2.x"));
        assert!(valid_name("MixedCase"));
        for bad in ["", "../x", "a/b", ".hidden", "sp ace"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn chart_yaml_fields() {
        let f = facts(
            "apiVersion: v2\nname: demo\nversion: 1.2.3\nappVersion: \"2\"\n",
            Some("a: 1\n".into()),
        )
        .unwrap();
        assert_eq!((f.name.as_str(), f.version.as_str()), ("demo", "1.2.3"));
        assert_eq!(f.values["a"], 1);
        assert!(matches!(
            facts("name: demo\nversion: latest\n", None),
            Err(ArchiveError::BadVersion(_))
        ));
        assert!(matches!(
            facts("- a\n", None),
            Err(ArchiveError::BadChartYaml(_))
        ));
    }
}
