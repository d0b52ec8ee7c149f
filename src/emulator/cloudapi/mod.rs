//! STUB (to be replaced): the emulator's control plane (TencentCloud API 3.0 on `POST /`).

use actix_web::web;

pub fn configure(_cfg: &mut web::ServiceConfig) {}
