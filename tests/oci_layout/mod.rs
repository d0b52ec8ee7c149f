//! Build OCI image layouts on disk (no network): single images and multi-platform indexes, with
//! real tar layers, for skopeo to copy through the adapter.
#![allow(dead_code)]

use std::path::Path;

use serde_json::json;
use tcr_adapter::oci::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// An uncompressed tar with one regular file (mode 0644, owner 0, mtime 0, ustar).
pub fn tar_with(name: &str, content: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut tar = tar::Builder::new(Vec::new());
    tar.append(&h, content).unwrap();
    tar.into_inner().unwrap()
}

pub struct Layout<'a> {
    dir: &'a Path,
    refs: Vec<serde_json::Value>,
}

impl<'a> Layout<'a> {
    pub fn new(dir: &'a Path) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir,
            refs: Vec::new(),
        }
    }

    pub fn blob(&self, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        std::fs::write(self.dir.join("blobs/sha256").join(d.encoded()), data).unwrap();
        d
    }

    /// One image manifest with `layers` tar layers; returns (manifest digest, manifest bytes).
    pub fn image(
        &self,
        seed: u64,
        arch: &str,
        layers: usize,
        layer_size: usize,
    ) -> (Digest, Vec<u8>) {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for i in 0..layers {
            let tar = tar_with(
                &format!("file-{seed}-{i}"),
                &bytes(seed * 100 + i as u64, layer_size),
            );
            let d = self.blob(&tar);
            diff_ids.push(d.to_string());
            descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": tar.len()}));
        }
        let config = json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}})
            .to_string();
        let cd = self.blob(config.as_bytes());
        let manifest = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
            "layers": descs,
        })
        .to_string()
        .into_bytes();
        (self.blob(&manifest), manifest)
    }

    pub fn tag_image(&mut self, tag: &str, seed: u64) -> Digest {
        let (d, m) = self.image(seed, "amd64", 2, 200_000);
        self.refs.push(
            json!({"mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": m.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}}),
        );
        d
    }

    pub fn tag_index(&mut self, tag: &str, seed: u64) -> Digest {
        let mut children = Vec::new();
        for (i, arch) in ["amd64", "arm64", "s390x"].iter().enumerate() {
            let (d, m) = self.image(seed * 10 + i as u64, arch, 1, 100_000);
            children.push(
                json!({"mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": m.len(),
                "platform": {"architecture": arch, "os": "linux"}}),
            );
        }
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
            .to_string()
            .into_bytes();
        let d = self.blob(&index);
        self.refs.push(
            json!({"mediaType": OCI_INDEX, "digest": d.to_string(), "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}}),
        );
        d
    }

    pub fn finish(&self) {
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs});
        std::fs::write(self.dir.join("index.json"), index.to_string()).unwrap();
    }
}

/// A layout at `dir` holding one image tagged `image.0` and one three-platform index tagged
/// `index.0` (seeds `image.1`, `index.1`): their digests.
pub fn image_and_index(dir: &Path, image: (&str, u64), index: (&str, u64)) -> (Digest, Digest) {
    let mut layout = Layout::new(dir);
    let single = layout.tag_image(image.0, image.1);
    let multi = layout.tag_index(index.0, index.1);
    layout.finish();
    (single, multi)
}

/// Every blob of `pulled` (a layout's [`blobs`]) is byte-identical to the blob of that name in
/// the source layout `src`, and there are at least `at_least` of them.
pub fn assert_blobs_from_source(
    pulled: &std::collections::BTreeMap<String, Vec<u8>>,
    src: &Path,
    at_least: usize,
) {
    let source = blobs(src);
    for (k, v) in pulled {
        assert_eq!(Some(v), source.get(k), "blob {k} equals the source");
    }
    assert!(
        pulled.len() >= at_least,
        "index, 3 manifests, 3 configs, 3 layers: {}",
        pulled.len()
    );
}

/// Every blob file of a layout: name → bytes.
pub fn blobs(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}
