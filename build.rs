//! Gives the crate one name, `linux_like`, for the targets whose kernel is
//! Linux: `target_os = "linux"` and `target_os = "android"`.
//!
//! Android runs the Linux kernel under its own C library (bionic), so it
//! takes the Linux backend: `/proc/self/maps`, `MAP_FIXED_NOREPLACE`,
//! ptrace. Rust gives the two targets different `target_os` values and no
//! common one (`target_family` is just `unix`), and a cfg cannot be aliased
//! from inside the crate, so without this script every gate would repeat
//! `any(target_os = "linux", target_os = "android")`, and one forgotten
//! copy would quietly send Android to the stub. Gates for what really
//! differs on Android still name `target_os = "android"`.
//!
//! It reads the target from `CARGO_CFG_TARGET_OS` only: no probing of the
//! compiler or the system.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(linux_like)");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" || target_os == "android" {
        println!("cargo::rustc-cfg=linux_like");
    }
}
