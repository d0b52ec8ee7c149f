//! STUB (to be replaced): content-addressed, crash-safe storage of blobs, manifests, tags and
//! upload sessions under `data_dir`.

use crate::clock::SharedClock;

pub struct Storage {}

impl Storage {
    pub fn open(_data_dir: &std::path::Path, _clock: SharedClock) -> std::io::Result<Self> {
        Ok(Storage {})
    }
}
