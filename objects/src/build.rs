//! Which build of the program this is, as reloads report it and the `Bench`
//! class answers it: the package version, and the label the build was made
//! with (`TORPOR_BUILD=label cargo build`), `dev` without one. Two binaries
//! of one version told apart by label is how a deploy is rehearsed.

/// `0.1.0+label`.
pub fn build_version() -> String {
    format!(
        "{}+{}",
        env!("CARGO_PKG_VERSION"),
        option_env!("TORPOR_BUILD").unwrap_or("dev")
    )
}
