//! What this binary is: its version and the git commit it was built from (set by `build.rs`).

/// The package version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Short git commit hash of the build, or `unknown` when built outside a git checkout (set
/// `ROOMCAST_GIT_COMMIT` at build time to provide it, as the Dockerfile does).
pub const GIT_COMMIT: &str = env!("ROOMCAST_GIT_COMMIT");

/// What `roomcast --version` prints after the name: `0.1.0 (1a2b3c4)`.
pub const VERSION_LINE: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("ROOMCAST_GIT_COMMIT"), ")");
