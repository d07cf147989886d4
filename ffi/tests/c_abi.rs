//! Builds C programs with the system C compiler against the checked-in
//! header and the shared library cargo just built, runs them, and requires
//! them to pass: `tests/c/abi_test.c`, which calls every exported function
//! and checks each result, and the example in `README.md`. Both write
//! x86 code and run it (`mov eax, imm32; ret`, the same bytes in 64- and
//! 32-bit mode), so they are built for x86-64 with the system's `cc` and
//! for 32-bit x86 with the i686 cross compiler, which links against the
//! i686 library of a 32-bit test run.

#![cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "x86")))]

mod common;

use std::path::Path;
use std::process::Command;

/// The compiler for programs of this test's own architecture.
#[cfg(target_arch = "x86_64")]
const C_COMPILER: &str = "cc";
#[cfg(target_arch = "x86")]
const C_COMPILER: &str = "i686-linux-gnu-gcc";

/// Compiles `source` into a program linked against the library, runs it
/// and returns its standard output; panics if either step fails.
fn compile_and_run(source: &Path, name: &str) -> String {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let library = common::built_shared_library();
    let library_dir = library.parent().expect("the library is in a directory");
    let program =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}_{}", std::process::id()));

    let compile = Command::new(C_COMPILER)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-o"])
        .arg(&program)
        .arg("-I")
        .arg(crate_dir.join("../include"))
        .arg(source)
        .arg(&library)
        .arg(format!("-Wl,-rpath,{}", library_dir.display()))
        .output()
        .unwrap_or_else(|error| panic!("the C compiler `{C_COMPILER}` runs: {error}"));
    assert!(
        compile.status.success(),
        "{C_COMPILER} failed on {}:\n{}{}",
        source.display(),
        String::from_utf8_lossy(&compile.stdout),
        String::from_utf8_lossy(&compile.stderr)
    );

    let run = Command::new(&program)
        .output()
        .expect("the C program starts");
    let _ = std::fs::remove_file(&program);
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "{} failed ({}):\n{stdout}{stderr}",
        source.display(),
        run.status
    );
    stdout
}

#[test]
fn c_program_calls_every_function_and_all_checks_pass() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/abi_test.c");
    let stdout = compile_and_run(&source, "abi_test");
    assert!(
        stdout.contains("all checks passed"),
        "unexpected output:\n{stdout}"
    );
}

#[test]
fn readme_example_compiles_and_runs() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md is readable");
    let start = readme.find("```c\n").expect("the README has a C example") + "```c\n".len();
    let length = readme[start..]
        .find("```")
        .expect("the C example is closed");
    let source = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("readme_example_{}.c", std::process::id()));
    std::fs::write(&source, &readme[start..start + length]).expect("the example can be written");
    let stdout = compile_and_run(&source, "readme_example");
    let _ = std::fs::remove_file(&source);
    assert!(
        stdout.contains("returns 42"),
        "unexpected output:\n{stdout}"
    );
}
