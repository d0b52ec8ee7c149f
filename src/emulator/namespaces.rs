//! The emulated instance's namespaces (Harbor projects): created only through the cloud API,
//! enforced by the data plane. Persisted as `data_dir/namespaces.json`, written atomically.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NamespaceInfo {
    pub name: String,
    pub id: i64,
    pub public: bool,
    /// RFC 3339.
    pub creation_time: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamespaceStoreError {
    #[error("The project named {0} already exists")]
    Exists(String),
    #[error("namespace {0} not found")]
    NotFound(String),
    #[error("namespace store: {0}")]
    Io(String),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    next_id: i64,
    namespaces: BTreeMap<String, NamespaceInfo>,
}

pub struct NamespaceStore {
    path: PathBuf,
    clock: SharedClock,
    state: RwLock<State>,
}

impl NamespaceStore {
    pub fn open(data_dir: &std::path::Path, clock: SharedClock) -> std::io::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join("namespaces.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                next_id: 1,
                namespaces: BTreeMap::new(),
            },
            Err(e) => return Err(e),
        };
        Ok(NamespaceStore {
            path,
            clock,
            state: RwLock::new(state),
        })
    }

    fn persist(&self, state: &State) -> Result<(), NamespaceStoreError> {
        let tmp = self.path.with_extension("json.tmp");
        let bytes =
            serde_json::to_vec_pretty(state).map_err(|e| NamespaceStoreError::Io(e.to_string()))?;
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, &self.path))
            .map_err(|e| NamespaceStoreError::Io(e.to_string()))
    }

    pub fn create(&self, name: &str, public: bool) -> Result<NamespaceInfo, NamespaceStoreError> {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        if st.namespaces.contains_key(name) {
            return Err(NamespaceStoreError::Exists(name.to_string()));
        }
        let secs = self.clock.now_secs();
        let info = NamespaceInfo {
            name: name.to_string(),
            id: st.next_id,
            public,
            creation_time: chrono::DateTime::from_timestamp(secs, 0)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        st.next_id += 1;
        st.namespaces.insert(name.to_string(), info.clone());
        self.persist(&st)?;
        Ok(info)
    }

    pub fn get(&self, name: &str) -> Option<NamespaceInfo> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.namespaces.get(name).cloned()
    }

    /// All namespaces, by name.
    pub fn list(&self) -> Vec<NamespaceInfo> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.namespaces.values().cloned().collect()
    }

    pub fn delete(&self, name: &str) -> Result<(), NamespaceStoreError> {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        if st.namespaces.remove(name).is_none() {
            return Err(NamespaceStoreError::NotFound(name.to_string()));
        }
        self.persist(&st)
    }
}
