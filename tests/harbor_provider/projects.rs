//! Projects and repositories.
