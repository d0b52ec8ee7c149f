//! The suite's test data, built like `conformance/setup.go` and `image.go` (v1.1.1): one config
//! and one manifest per workflow (configs differ by a random `author`), the gzip tar layer, the
//! 42-byte blobs A and B, the referrer artifacts, all marshalled like Go's
//! `json.MarshalIndent(v, "", "\t")` with the same field order and `omitempty` rules.

use base64::Engine;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tcr_adapter::oci::Digest;

pub use tcr_adapter::oci::media::{OCI_INDEX, OCI_MANIFEST};
pub const EMPTY_JSON_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
pub const TEST_TAG_NAME: &str = "tagtest0";
pub const EMPTY_LAYER_TEST_TAG: &str = "emptylayer";
pub const NONEXISTENT_MANIFEST: &str = ".INVALID_MANIFEST_NAME";
pub const ANNOTATION_KEY: &str = "org.opencontainers.conformance.test";
pub const REF_ARTIFACT_TYPE_A: &str = "application/vnd.nhl.peanut.butter.bagel";
pub const REF_ARTIFACT_TYPE_B: &str = "application/vnd.nba.strawberry.jam.croissant";
pub const REF_ARTIFACT_TYPE_INDEX: &str = "application/vnd.food.stand";
pub const ARTIFACT_TYPE_FILTER: &str = "artifactType";

/// The 15 codes of `errorCodes` in setup.go.
pub const ERROR_CODES: [&str; 15] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "MANIFEST_UNVERIFIED",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "TAG_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
];

const LAYER_BASE64: &str = "H4sIAAAAAAAAA+3OQQrCMBCF4a49xXgBSUnaHMCTRBptQRNpp6i3t0UEV7oqIv7fYgbmzeJpHHSjVy0\
WZCa1c/MufWVe94N3RWlrZ72x3k/30nhbFWKWLPU0Dhp6keJ8im//PuU/6pZH2WVtYx8b0Sz7LjWSR5VLG6YRBumSzOlGtjkd+qD\
jMWiX07Befbs7AAAAAAAAAAAAAAAAAPyzO34MnqoAKAAA";

/// Go `[]byte` in JSON: base64, `null` when nil.
fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Not omitempty: a nil slice marshals as `null`.
    pub new_unspecified_field: Option<String>,
}

impl Descriptor {
    fn of(media_type: &str, content: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: Digest::sha256_of(content).to_string(),
            size: content.len() as i64,
            annotations: None,
            data: None,
            artifact_type: None,
            new_unspecified_field: None,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    manifests: Vec<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct Image {
    author: String,
    architecture: &'static str,
    os: &'static str,
    rootfs: RootFs,
}

/// `json.MarshalIndent(v, "", "\t")`.
fn marshal_indent<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    v.serialize(&mut ser).unwrap();
    out
}

#[derive(Clone)]
pub struct TestBlob {
    pub content: Vec<u8>,
    pub digest: String,
}

impl TestBlob {
    fn new(content: Vec<u8>) -> TestBlob {
        let digest = Digest::sha256_of(&content).to_string();
        TestBlob { content, digest }
    }
    pub fn len(&self) -> String {
        self.content.len().to_string()
    }
}

fn annotation(v: &str) -> Option<std::collections::BTreeMap<String, String>> {
    Some([(ANNOTATION_KEY.to_string(), v.to_string())].into())
}

pub struct Fixtures {
    pub configs: Vec<TestBlob>,
    pub manifests: Vec<TestBlob>,
    pub layer: TestBlob,
    pub empty_layer_manifest: TestBlob,
    pub blob_a: TestBlob,
    pub blob_b: TestBlob,
    pub chunk1: Vec<u8>,
    pub chunk2: Vec<u8>,
    pub chunk1_range: String,
    pub chunk2_range: String,
    pub dummy_digest: String,
    pub empty_json: TestBlob,
    pub ref_blob_a: TestBlob,
    pub ref_blob_b: TestBlob,
    pub refs_a_config: TestBlob,
    pub refs_b_config: TestBlob,
    pub refs_a_layer: TestBlob,
    pub refs_b_layer: TestBlob,
    pub refs_c_layer: TestBlob,
    pub refs_index: TestBlob,
    /// Digest → the single annotation value its referrer descriptor must carry.
    pub annotation_values: std::collections::HashMap<String, String>,
}

fn random_blob(size: usize, seed: u64) -> TestBlob {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    TestBlob::new((0..size).map(|_| r.gen::<u8>()).collect())
}

fn random_string(n: usize) -> String {
    const LETTERS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-";
    let mut r = rand::thread_rng();
    (0..n)
        .map(|_| LETTERS[r.gen_range(0..LETTERS.len())] as char)
        .collect()
}

impl Fixtures {
    pub fn new() -> Fixtures {
        let seed: u64 = rand::thread_rng().gen();
        // numWorkflows = 16 in setup.go; the suite uses indexes 0..=4.
        let configs: Vec<TestBlob> = (0..16)
            .map(|_| {
                TestBlob::new(marshal_indent(&Image {
                    author: random_string(16),
                    architecture: "amd64",
                    os: "linux",
                    rootfs: RootFs {
                        kind: "layers",
                        diff_ids: vec![],
                    },
                }))
            })
            .collect();
        let layer = TestBlob::new(
            base64::engine::general_purpose::STANDARD
                .decode(LAYER_BASE64)
                .unwrap(),
        );
        let layers = vec![Descriptor::of(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &layer.content,
        )];
        let config_desc = |c: &TestBlob| Descriptor {
            data: Some(b64(&c.content)),
            new_unspecified_field: Some(b64(b"hello world")),
            ..Descriptor::of("application/vnd.oci.image.config.v1+json", &c.content)
        };
        let manifests: Vec<TestBlob> = configs
            .iter()
            .map(|c| {
                TestBlob::new(marshal_indent(&Manifest {
                    schema_version: 2,
                    media_type: Some(OCI_MANIFEST.into()),
                    artifact_type: None,
                    config: config_desc(c),
                    layers: layers.clone(),
                    subject: None,
                    annotations: None,
                }))
            })
            .collect();
        let empty_layer_manifest = TestBlob::new(marshal_indent(&Manifest {
            schema_version: 2,
            media_type: None,
            artifact_type: None,
            config: config_desc(&configs[1]),
            layers: vec![],
            subject: None,
            annotations: None,
        }));
        let blob_a = random_blob(42, seed.wrapping_add(1));
        let blob_b = random_blob(42, seed.wrapping_add(2));
        let half = 42 / 2 + 1;
        let chunk1 = blob_b.content[..half].to_vec();
        let chunk2 = blob_b.content[half..].to_vec();
        let chunk1_range = format!("0-{}", chunk1.len() - 1);
        let chunk2_range = format!("{}-{}", chunk1.len(), blob_b.content.len() - 1);

        let empty_json = TestBlob::new(b"{}".to_vec());
        let empty_desc = Descriptor::of("application/vnd.oci.empty.v1+json", &empty_json.content);
        let ref_blob_a = TestBlob::new(b"NHL Peanut Butter on my NHL bagel".to_vec());
        let ref_blob_b = TestBlob::new(b"NBA Strawberry Jam on my NBA croissant".to_vec());
        let subject = |m: &TestBlob| Some(Descriptor::of(OCI_MANIFEST, &m.content));
        let mut annotation_values = std::collections::HashMap::new();
        // A referrer of `subj` whose content is `blob` of type `ty`: as its config, or (`in_layer`)
        // as its only layer with `artifactType` set and the empty config.
        let mut artifact =
            |(ty, blob, in_layer, subj, note): (&str, &TestBlob, bool, &TestBlob, Option<&str>)| {
                let typed = Descriptor::of(ty, &blob.content);
                let (artifact_type, config, layer) = if in_layer {
                    (Some(ty), empty_desc.clone(), typed)
                } else {
                    (None, typed, empty_desc.clone())
                };
                let t = TestBlob::new(marshal_indent(&Manifest {
                    schema_version: 2,
                    media_type: Some(OCI_MANIFEST.into()),
                    artifact_type: artifact_type.map(Into::into),
                    config,
                    layers: vec![layer],
                    subject: subject(subj),
                    annotations: note.and_then(annotation),
                }));
                if let Some(n) = note {
                    annotation_values.insert(t.digest.clone(), n.to_string());
                }
                t
            };
        let (a, b, m4) = (REF_ARTIFACT_TYPE_A, REF_ARTIFACT_TYPE_B, &manifests[4]);
        let [refs_a_config, refs_b_config, refs_a_layer, refs_b_layer, refs_c_layer] = [
            (a, &ref_blob_a, false, m4, Some("test config a")),
            (b, &ref_blob_b, false, m4, Some("test config b")),
            (a, &ref_blob_a, true, m4, Some("test layer a")),
            (b, &ref_blob_b, true, m4, Some("test layer b")),
            // Same as B, on a subject (manifests[3]) that is never pushed in discovery.
            (b, &ref_blob_b, true, &manifests[3], None),
        ]
        .map(&mut artifact);
        let refs_index = TestBlob::new(marshal_indent(&Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            artifact_type: Some(REF_ARTIFACT_TYPE_INDEX.into()),
            manifests: vec![
                Descriptor::of(OCI_MANIFEST, &refs_a_config.content),
                Descriptor::of(OCI_MANIFEST, &refs_a_layer.content),
            ],
            subject: subject(&manifests[4]),
            annotations: annotation("test index"),
        }));
        annotation_values.insert(refs_index.digest.clone(), "test index".into());

        Fixtures {
            configs,
            manifests,
            layer,
            empty_layer_manifest,
            blob_a,
            blob_b,
            chunk1,
            chunk2,
            chunk1_range,
            chunk2_range,
            dummy_digest: Digest::sha256_of(b"hello world").to_string(),
            empty_json,
            ref_blob_a,
            ref_blob_b,
            refs_a_config,
            refs_b_config,
            refs_a_layer,
            refs_b_layer,
            refs_c_layer,
            refs_index,
            annotation_values,
        }
    }
}
