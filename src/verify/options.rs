//! `tcr-adapter verify` options: the command-line arguments (clap) and the filters they build
//! (projects, repository and tag globs), parsed once at the edge into typed values.

use std::path::PathBuf;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::VerifyError;

/// Which API the source speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// Any OCI/Docker registry: `/v2/_catalog`, `tags/list`, manifests.
    Registry,
    /// Harbor 1.8-2.x through its v1 API: projects, repositories, tags, chart repository.
    Harbor,
}

/// Output format on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// A table per namespace and the totals.
    #[default]
    Table,
    /// One JSON document (items and totals).
    Json,
}

/// `verify` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The old registry, e.g. `https://harbor.example.com`.
    #[arg(long)]
    pub source: String,
    /// `USER:PASSWORD` for the source.
    #[arg(long, env = "TCR_ADAPTER_SOURCE_CREDS", hide_env_values = true)]
    pub source_creds: Option<String>,
    /// A file holding `USER:PASSWORD` for the source.
    #[arg(long, conflicts_with = "source_creds")]
    pub source_creds_file: Option<PathBuf>,
    /// The source's API; detected when absent (`/api/systeminfo` answers on Harbor).
    #[arg(long, value_enum)]
    pub source_kind: Option<SourceKind>,
    /// Accept an invalid TLS certificate on the source.
    #[arg(long)]
    pub source_insecure: bool,
    /// Only these projects (namespaces, as the source names them); repeatable.
    #[arg(long = "project")]
    pub projects: Vec<String>,
    /// Only repositories whose full name (`project/name`) matches one of these globs; repeatable.
    #[arg(long = "repo")]
    pub repos: Vec<String>,
    /// Only tags (and chart versions) matching one of these globs; repeatable.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Leave charts out (Harbor sources).
    #[arg(long)]
    pub no_charts: bool,
    /// Requests in flight at most, per side.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also write a Markdown report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also list the items that match (table and Markdown).
    #[arg(long)]
    pub show_ok: bool,
}

/// Source credentials.
#[derive(Clone)]
pub struct Creds {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Creds({}, ***)", self.user)
    }
}

impl Creds {
    fn parse(s: &str, what: &str) -> Result<Creds, VerifyError> {
        let s = s.trim_end_matches(['\r', '\n']);
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Creds {
                user: u.into(),
                password: p.into(),
            }),
            _ => Err(VerifyError::Usage(format!(
                "{what}: expected USER:PASSWORD"
            ))),
        }
    }
}

impl VerifyArgs {
    /// The source credentials, from `--source-creds` or `--source-creds-file`.
    pub fn creds(&self) -> Result<Option<Creds>, VerifyError> {
        if let Some(c) = &self.source_creds {
            return Creds::parse(c, "--source-creds").map(Some);
        }
        if let Some(p) = &self.source_creds_file {
            let s = std::fs::read_to_string(p).map_err(|e| {
                VerifyError::Usage(format!("--source-creds-file {}: {e}", p.display()))
            })?;
            return Creds::parse(&s, "--source-creds-file").map(Some);
        }
        Ok(None)
    }

    /// The source base URL without a trailing slash.
    pub fn source_url(&self) -> Result<url::Url, VerifyError> {
        let u = url::Url::parse(self.source.trim_end_matches('/')).map_err(|e| {
            VerifyError::Usage(format!(
                "--source {:?}: {e} (e.g. https://harbor.example.com)",
                self.source
            ))
        })?;
        if u.scheme() != "http" && u.scheme() != "https" {
            return Err(VerifyError::Usage(format!(
                "--source {:?}: the scheme must be http or https",
                self.source
            )));
        }
        Ok(u)
    }

    pub fn filters(&self) -> Result<Filters, VerifyError> {
        Ok(Filters {
            projects: self.projects.clone(),
            repos: globs(&self.repos, "--repo")?,
            tags: globs(&self.tags, "--tag")?,
        })
    }
}

fn globs(patterns: &[String], what: &str) -> Result<Option<GlobSet>, VerifyError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = Glob::new(p).map_err(|e| VerifyError::Usage(format!("{what} {p:?}: {e}")))?;
        b.add(g);
    }
    b.build()
        .map(Some)
        .map_err(|e| VerifyError::Usage(format!("{what}: {e}")))
}

/// What is in scope, as the source names it.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub projects: Vec<String>,
    repos: Option<GlobSet>,
    tags: Option<GlobSet>,
}

impl Filters {
    pub fn project(&self, project: &str) -> bool {
        self.projects.is_empty() || self.projects.iter().any(|p| p == project)
    }
    /// A repository (`project/name`) in scope.
    pub fn repo(&self, repo: &str) -> bool {
        let project = repo.split('/').next().unwrap_or(repo);
        self.project(project) && self.repos.as_ref().is_none_or(|g| g.is_match(repo))
    }
    pub fn tag(&self, tag: &str) -> bool {
        self.tags.as_ref().is_none_or(|g| g.is_match(tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: VerifyArgs,
    }

    #[test]
    fn filters_match_projects_repos_and_tags() {
        let t = T::parse_from([
            "x",
            "--source",
            "http://h",
            "--project",
            "lib",
            "--repo",
            "lib/a*",
            "--tag",
            "v1.*",
        ]);
        let f = t.a.filters().unwrap();
        assert!(f.repo("lib/abc"));
        assert!(!f.repo("lib/b"));
        assert!(!f.repo("other/abc"));
        assert!(f.tag("v1.2"));
        assert!(!f.tag("v2"));
    }

    #[test]
    fn creds_need_a_colon_and_never_show_the_password() {
        assert!(Creds::parse("nocolon", "x").is_err());
        let c = Creds::parse("u:p:q\n", "x").unwrap();
        assert_eq!(c.password, "p:q");
        assert!(!format!("{c:?}").contains("p:q"));
    }
}
