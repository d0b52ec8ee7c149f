//! STUB (to be replaced): the emulator's data plane routes.

use actix_web::web;

pub fn configure(_cfg: &mut web::ServiceConfig) {}
