//! Credentials expiring during a long migration: the emulator's temporary instance tokens live
//! 2 s and its realm tokens 1 s, so the adapter must renew both between the steps of one push —
//! for API keys (CreateInstanceToken again) and for a long-term credential (realm tokens again).
//! (The adapter's own tokens expiring is covered by `adapter_auth::expired_tokens_are_invalid`.)

use std::time::Duration;

use reqwest::Method;
use tcr_adapter::emulator::TokenKind;
use tcr_adapter::oci::Digest;

use crate::harbor::{image, Env, DOCKER_MANIFEST};
use crate::record;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expiring_mid_migration_are_renewed() {
    let e = Env::start(
        |c| {
            c.faults.token_ttl_secs = 2;
            c.faults.registry_token_ttl_secs = 1;
        },
        |_| {},
    )
    .await;
    let lt = e
        .emu
        .state
        .tokens
        .issue(crate::common::DEMO_UIN, TokenKind::LongTerm);
    let creds = [
        (
            crate::common::DEMO_SECRET_ID.to_string(),
            crate::common::DEMO_SECRET_KEY.to_string(),
        ),
        (lt.username.clone(), lt.token.clone()),
    ];
    for (i, (user, pass)) in creds.iter().enumerate() {
        let repo = format!("expiry-{i}/app");
        let scope = format!("repository:{repo}:pull,push");
        let (layer, config, manifest) = image(&repo, DOCKER_MANIFEST);
        let t = e.token_as(user, pass, &[&scope]).await;
        e.push_blob(&repo, &t, &layer, false, false).await;
        // Every upstream credential of the first step has expired by now.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        e.push_blob(&repo, &t, &config, false, false).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        e.put_manifest(&repo, "v1", &t, DOCKER_MANIFEST, &manifest)
            .await;
        let r = e
            .manifest(
                Method::GET,
                (&repo, "v1"),
                &t,
                &[("Accept", DOCKER_MANIFEST)],
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            Digest::sha256_of(&r.bytes().await.unwrap()),
            Digest::sha256_of(&manifest)
        );
    }
    let issued = crate::harbor::sum_metric(
        &e.adapter_metrics().await,
        "tcr_adapter_instance_tokens_total{",
        &[],
    );
    assert!(issued >= 3, "instance tokens renewed mid-push: {issued}");
    record(
        "temporary instance tokens (2 s) and realm tokens (1 s) expiring between the steps of a push",
        &format!("2 pushes with 2.5 s pauses; {issued} instance tokens obtained"),
        "nothing: every step succeeded with the adapter token it started with",
        "the manifest of each push reads back with its digest",
    );
    e.adapter.stop().await;
}
