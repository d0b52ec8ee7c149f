//! tcr-adapter: a registry proxy that lets any Harbor (v1.8+) replicate into Tencent Container
//! Registry through Harbor's plain "Docker Registry" provider, plus an embedded TCR emulator.
//!
//! Dependencies point one way: `registry`, `harbor_api` → `auth`/`credentials`/`namespaces` →
//! `tencentcloud`/`upstream`; `emulator` stands alone (it shares only `oci`, `config`, `clock` and the TC3 signer in
//! `tencentcloud::signer`, which it uses to verify requests).
#![forbid(unsafe_code)]

pub mod access_log;
pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod discovery;
pub mod emulator;
pub mod harbor_api;
pub mod namespaces;
pub mod oci;
pub mod readiness;
pub mod registry;
pub mod state;
pub mod telemetry;
pub mod tencentcloud;
pub mod upstream;
pub mod verify;
pub mod x509;
