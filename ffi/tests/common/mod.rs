//! Finding the shared library cargo built for this test run.

use std::path::PathBuf;

/// The `cdylib` of this crate in the target directory of the running test.
///
/// The test binary lives in `target/<profile>/deps/`. Cargo writes the
/// library there too, and copies it up to `target/<profile>/` only for
/// `cargo build`, so the copy in `deps/` is the one built for this run; the
/// one in the profile directory may be left from an older build.
pub fn built_shared_library() -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary has a path");
    let deps = test_binary
        .parent()
        .expect("the test binary is in a directory");
    let profile = deps
        .parent()
        .expect("deps/ is inside the profile directory");
    let name = format!(
        "{}memory_buffers_c{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let candidates = [deps.join(&name), profile.join(&name)];
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| panic!("the shared library is not built; looked at {candidates:?}"))
}
