//! Generates the Python bindings from the built library with the in-repo `uniffi-bindgen` and
//! runs a Python script against the real library.

use std::path::{Path, PathBuf};
use std::process::Command;

fn library_path() -> PathBuf {
    // `cargo test` builds the cdylib beside the test binary (target/<profile>/deps) and only
    // `cargo build` copies it up a level; the one in deps is the fresh one.
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let name = format!("{}weft_ffi{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    [deps.join(&name), deps.parent().unwrap().join(&name)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} was not built; run `cargo build -p weft-ffi`"))
}

/// Generates the Python bindings into a fresh directory with the library beside them.
fn python_bindings() -> (String, tempfile::TempDir) {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if Command::new(&python).arg("--version").output().is_err() {
        panic!("Python 3 is needed for the binding test: install python3 or set PYTHON");
    }
    let out = tempfile::tempdir().unwrap();
    let lib = library_path();
    let status = Command::new(env!("CARGO_BIN_EXE_uniffi-bindgen"))
        .args(["generate", "--language", "python", "--out-dir"])
        .arg(out.path())
        .arg(&lib)
        .status()
        .unwrap();
    assert!(status.success(), "uniffi-bindgen failed");
    std::fs::copy(&lib, out.path().join(lib.file_name().unwrap())).unwrap();
    (python, out)
}

/// Runs one Python script against freshly generated bindings; returns what it printed.
fn run_python(script: &str) -> String {
    let (python, out) = python_bindings();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script);
    let result = Command::new(&python).arg(script).env("WEFT_BINDINGS_DIR", out.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    assert!(result.status.success(), "python failed:\n{stdout}\n{}", String::from_utf8_lossy(&result.stderr));
    stdout
}

#[test]
fn python_runs_two_nodes_over_libp2p_and_over_a_python_radio() {
    assert!(run_python("test_node.py").contains("3 passed"));
}

#[test]
fn python_loads_the_real_library() {
    assert!(run_python("test_identity.py").contains("1 passed"));
}
