//! `POST /api/chartrepo/{ns}/charts`: a chart upload (Harbor's `UploadChart`, `helm cm-push`).
//! The steps: parse the project → identify the caller → policy gate → ensure the namespace →
//! receive the whole upload and check it ([`super::chart_spool`]) → commit → answer.
//!
//! No chart version is ever lost. Nothing is sent to TCR before the upload is complete and
//! valid, so a truncated, invalid or aborted upload changes nothing. The commit runs detached
//! from the client's connection: a client that disconnects mid-commit cannot stop it half way.
//! The new chart is offered to TCR first; only when TCR already holds that version (409) is the
//! existing one replaced — its bytes (and provenance) are downloaded and kept, it is deleted, the
//! new one is sent, and if that fails the kept bytes are put back.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use serde_json::Value;

use super::caller::{self, Anonymous};
use super::chart_spool::{self, ChartRef, Received, SpoolFile, SpoolLimits};
use super::charts::{chart_api, chart_error_message, chart_repo, failure, Target};
use super::names::{ChartFile, Project};
use super::HarborFront;
use crate::credentials::ClientIdentity;
use crate::oci::{ErrorCode, OciError};
use crate::registry::body::read_limited;
use crate::upstream::{ForwardBody, UpstreamPath};

/// `POST /api/chartrepo/{ns}/charts`.
pub async fn upload(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    front: web::Data<HarborFront>,
) -> Result<HttpResponse, OciError> {
    let project = Project::parse(&path.into_inner())?;
    let identity = caller::identify(&req, &front, Anonymous::Refused).await?;
    let ns = front.namespaces.admit(project.as_str())?;
    front.namespaces.ensure(&ns, &identity).await?;
    let limits = front.chart_limits.clone();
    let received = chart_spool::receive(&req, payload, &limits, &front.metrics.bytes_in).await?;
    let chart = chart_spool::inspect(&received.chart).await?;
    let commit = Commit {
        front: front.into_inner(),
        target: Target::for_identity(&identity, &ns),
        identity,
        limits,
        chart,
    };
    // Detached: the commit finishes even when the client goes away.
    actix_web::rt::spawn(async move { commit.run(received).await })
        .await
        .map_err(|e| OciError::new(ErrorCode::Unknown, format!("chart commit: {e}")))??;
    Ok(HttpResponse::Created().json(serde_json::json!({"saved": true})))
}

/// An upstream answer that was not a success.
struct Refusal {
    status: u16,
    error: OciError,
}

struct Commit {
    front: Arc<HarborFront>,
    target: Target,
    identity: ClientIdentity,
    limits: SpoolLimits,
    chart: ChartRef,
}

impl Commit {
    async fn run(self, new: Received) -> Result<(), OciError> {
        match self.send(&new).await {
            Ok(()) => {
                self.audit("chart_uploaded");
                Ok(())
            }
            Err(r) if r.status == 409 => self.replace(new).await,
            Err(r) => Err(r.error),
        }
    }

    /// Keep the existing version, delete it, send the new one; put the old one back on failure.
    async fn replace(self, new: Received) -> Result<(), OciError> {
        let mut kept = self.keep_existing().await?;
        self.delete_existing().await?;
        let Err(refused) = self.send(&new).await else {
            self.audit("chart_replaced");
            return Ok(());
        };
        match self.send(&kept).await {
            Ok(()) => {
                self.audit("chart_upload_failed_previous_restored");
                Err(refused.error)
            }
            Err(r) => {
                kept.chart.keep();
                if let Some(p) = kept.prov.as_mut() {
                    p.keep();
                }
                tracing::error!(
                    target: "audit", event = "chart_restore_failed",
                    namespace = %self.target_ns(), chart = %self.chart.name,
                    version = %self.chart.version, kept_copy = ?kept.chart.path,
                    upstream_status = r.status,
                    "the new chart was refused and the previous version could not be put back; \
                     its bytes are kept on disk"
                );
                Err(refused.error)
            }
        }
    }

    /// Download the version TCR holds (archive, and provenance when there is one).
    async fn keep_existing(&self) -> Result<Received, OciError> {
        let file = self.existing_file().await;
        let chart = self
            .download(file.as_str())
            .await?
            .ok_or_else(|| cannot_keep("TCR did not serve the existing archive"))?;
        let prov = self.download(&format!("{file}.prov")).await?;
        let inspected = chart_spool::inspect(&chart).await;
        if inspected.as_ref().ok() != Some(&self.chart) {
            return Err(cannot_keep(
                "the archive TCR served is not that chart version",
            ));
        }
        Ok(Received { chart, prov })
    }

    /// The file name the index gives the existing version, else `<name>-<version>.tgz`.
    async fn existing_file(&self) -> ChartFile {
        let fallback = ChartFile::of(&self.chart.name, &self.chart.version);
        let path = chart_api(
            self.target_ns(),
            &[self.chart.name.as_str(), self.chart.version.as_str()],
        );
        let Ok(path) = path else { return fallback };
        let Ok(resp) = self
            .call(reqwest::Method::GET, &path, ForwardBody::Empty, None)
            .await
        else {
            return fallback;
        };
        if !resp.status().is_success() {
            return fallback;
        }
        let bytes = read_limited(resp, 1 << 20).await.unwrap_or_default();
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| {
                let url = v["metadata"]["urls"][0].as_str()?.to_string();
                ChartFile::parse(url.rsplit('/').next()?).ok()
            })
            .unwrap_or(fallback)
    }

    /// A file of the chart repository into a spool file; `None` when TCR has no such file.
    async fn download(&self, file: &str) -> Result<Option<SpoolFile>, OciError> {
        let path = chart_repo(self.target_ns(), &["charts", file])?;
        let resp = self
            .call(reqwest::Method::GET, &path, ForwardBody::Empty, None)
            .await?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            s => return Err(cannot_keep(&format!("TCR answered {s} to the download"))),
        }
        let mut budget = self.limits.max_bytes;
        let stream = Box::pin(resp.bytes_stream());
        Ok(Some(
            chart_spool::spool_stream(stream, &self.limits, &mut budget, None).await?,
        ))
    }

    async fn delete_existing(&self) -> Result<(), OciError> {
        let path = chart_api(
            self.target_ns(),
            &[self.chart.name.as_str(), self.chart.version.as_str()],
        )?;
        let resp = self
            .call(reqwest::Method::DELETE, &path, ForwardBody::Empty, None)
            .await?;
        if !resp.status().is_success() {
            let what = format!("{}:{}", self.chart.name, self.chart.version);
            return Err(failure(resp, &self.target, false, &what).await);
        }
        Ok(())
    }

    /// POST a fresh multipart form made of `files` to TCR's chart repository.
    async fn send(&self, files: &Received) -> Result<(), Refusal> {
        let name = ChartFile::of(&self.chart.name, &self.chart.version);
        let unavailable = |error: OciError| Refusal { status: 0, error };
        let form = chart_spool::upstream_form(&files.chart, files.prov.as_ref(), name.as_str())
            .await
            .map_err(unavailable)?;
        let path = chart_api(self.target_ns(), &[]).map_err(unavailable)?;
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&form.content_type) {
            headers.insert(CONTENT_TYPE, v);
        }
        headers.insert(CONTENT_LENGTH, HeaderValue::from(form.length));
        let resp = self
            .call(
                reqwest::Method::POST,
                &path,
                ForwardBody::Stream(form.body),
                Some(headers),
            )
            .await
            .map_err(unavailable)?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let error = match status {
            400 | 409 => {
                let bytes = read_limited(resp, 64 * 1024).await.unwrap_or_default();
                OciError::new(
                    ErrorCode::Denied,
                    format!(
                        "TCR's chart repository refused the chart: {}",
                        chart_error_message(&bytes)
                    ),
                )
                .with_status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
            }
            _ => {
                let what = format!("chart repository of {}", self.target_ns());
                failure(resp, &self.target, false, &what).await
            }
        };
        Err(Refusal { status, error })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &UpstreamPath,
        body: ForwardBody,
        headers: Option<HeaderMap>,
    ) -> Result<reqwest::Response, OciError> {
        let credential = caller::upstream_basic(&self.identity);
        Ok(self
            .front
            .upstream
            .send_basic(
                method,
                path,
                headers.unwrap_or_default(),
                body,
                credential.as_ref(),
                "chart_api",
            )
            .await?)
    }

    fn target_ns(&self) -> &str {
        self.target.upstream_ns()
    }

    fn audit(&self, event: &'static str) {
        tracing::info!(
            target: "audit", event, namespace = %self.target_ns(), chart = %self.chart.name,
            version = %self.chart.version, subject = ?self.identity.subject(), "chart upload"
        );
    }
}

fn cannot_keep(why: &str) -> OciError {
    OciError::new(
        ErrorCode::Unavailable,
        format!(
            "TCR already holds this chart version and the adapter could not keep a copy of it \
             before replacing it ({why}); nothing was changed"
        ),
    )
    .with_status(StatusCode::BAD_GATEWAY)
}
