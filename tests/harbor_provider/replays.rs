//! One replication run per Harbor generation and credential kind, as the "harbor" adapter sends
//! it: images (1.8: chunked single image; 1.10: single image; 2.x: a multi-arch OCI index) and
//! charts of 1 KiB and 50 MiB into namespaces that do not exist yet; a re-run without `override`
//! skips the charts, one with `override` uploads again; then chart and image deletion replicate.

use reqwest::{Method, StatusCode};

use crate::common::charts::chart_archive;
use crate::harbor::Env;
use crate::{
    emulator_chart, emulator_chart_calls, info, prepare_for_push, replicate_chart, test_connection,
    ChartRun, Creds, Gen,
};

/// The charts of a run, built before any connection is open (building blocks the test's runtime).
struct Charts {
    small: Vec<u8>,
    big: Vec<u8>,
    changed: Vec<u8>,
}

async fn generation(g: Gen) {
    let charts = Charts {
        small: chart_archive("small", "0.1.0", 1024),
        big: chart_archive("big", "1.0.0", 50 << 20),
        changed: chart_archive("small", "0.1.0", 2048),
    };
    let e = Env::default().await;
    for (kind, creds) in [("keys", Creds::api_keys()), ("lt", Creds::long_term(&e))] {
        let project = format!(
            "{}-{kind}",
            format!("{g:?}").to_lowercase().replace('_', "")
        );
        run(&e, g, &creds, &project, &charts).await;
    }
    e.adapter.stop().await;
}

async fn run(e: &Env, g: Gen, c: &Creds, project: &str, charts: &Charts) {
    assert!(!e.namespaces().contains(&project.to_string()));
    // Test connection, then the run: Info (2.3+ every run), PrepareForPush, images, charts.
    test_connection(e, g, c).await;
    if g >= Gen::V2_3 {
        info(e, g, c).await;
    }
    prepare_for_push(e, g, c, &[project]).await;
    assert!(
        e.namespaces().contains(&project.to_string()),
        "{g:?}: project created up front"
    );
    let repo = format!("{project}/app");
    match g {
        Gen::V1_8 => e.replay_1_8(&repo, &c.user, &c.pass).await,
        Gen::V1_10 => e.replay_1_10(&repo, &c.user, &c.pass).await,
        _ => e.replay_2_0(&repo, &c.user, &c.pass).await,
    }
    let (small, big, changed) = (&charts.small, &charts.big, &charts.changed);
    for (name, archive) in [("small", small), ("big", big)] {
        let v = if name == "small" { "0.1.0" } else { "1.0.0" };
        let ran = replicate_chart(e, g, c, project, (name, v), archive, false).await;
        assert_eq!(ran, ChartRun::Uploaded, "{g:?} {name}");
        let (s, stored) = emulator_chart(e, project, &format!("{name}-{v}.tgz")).await;
        assert_eq!(s, StatusCode::OK);
        assert!(stored == *archive, "{g:?}: {name} is byte-identical in TCR");
    }

    // Re-run without override: ChartExist → 200 → skipped, nothing posted.
    let posts = emulator_chart_calls(e, "POST").await;
    let ran = replicate_chart(e, g, c, project, ("small", "0.1.0"), small, false).await;
    assert_eq!(ran, ChartRun::Skipped);
    assert_eq!(emulator_chart_calls(e, "POST").await, posts);
    // With override: uploaded again (the emulator answers 409 to duplicates by default).
    let ran = replicate_chart(e, g, c, project, ("small", "0.1.0"), changed, true).await;
    assert_eq!(ran, ChartRun::Uploaded);
    let (_, stored) = emulator_chart(e, project, "small-0.1.0.tgz").await;
    assert!(
        stored == *changed,
        "{g:?}: the override upload replaced the chart"
    );

    // Deletion replication (event-based rules): chart, then image.
    let path = format!("/api/chartrepo/{project}/charts/big/1.0.0");
    assert_eq!(g.at(e, c).get(&path).await.status(), 200);
    let r = g.at(e, c).call(Method::DELETE, &path, None).await;
    assert!(
        r.status().is_success(),
        "{g:?}: chart delete {}",
        r.status()
    );
    assert_eq!(emulator_chart(e, project, "big-1.0.0.tgz").await.0, 404);
    assert_eq!(g.at(e, c).get(&path).await.status(), 404);

    let t = e
        .token_as(&c.user, &c.pass, &[&format!("repository:{repo}:pull")])
        .await;
    assert_eq!(e.head_manifest(&repo, "v1", &t).await, 200);
    let tag_v1 = format!("/api/repositories/{repo}/tags/v1");
    let r = g.at(e, c).call(Method::DELETE, &tag_v1, None).await;
    assert!(
        r.status().is_success(),
        "{g:?}: image delete {} {}",
        r.status(),
        r.text().await.unwrap()
    );
    assert_eq!(
        e.head_manifest(&repo, "v1", &t).await,
        404,
        "{g:?}: tag gone from TCR"
    );
    // A second deletion finds nothing: Harbor's HEAD gets 404 and skips it.
    let r = g.at(e, c).call(Method::DELETE, &tag_v1, None).await;
    assert_eq!(r.status(), 404);
}

/// One `#[tokio::test]` per generation: `name => Gen`.
macro_rules! generation_tests {
    ($($name:ident => $g:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                generation(Gen::$g).await;
            }
        )*
    };
}

generation_tests! {
    harbor_1_8_0 => V1_8,
    harbor_1_10 => V1_10,
    harbor_2_0 => V2_0,
    harbor_2_3 => V2_3,
    harbor_2_5 => V2_5,
}
