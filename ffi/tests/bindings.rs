//! Generates the bindings from the built library with the in-repo `uniffi-bindgen` and runs
//! Python and Kotlin programs against the real library.
//!
//! The Kotlin test needs a JDK, kotlinc and JNA, which a fresh machine with only Rust and Python
//! lacks, so it is `#[ignore]`d from the plain `cargo test`; `.ci/run` installs them and runs it
//! with `--ignored`, and there a missing tool fails the test with what to install.

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

/// Generates one language's bindings into a fresh directory with the library beside them.
fn bindings(language: &str) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let lib = library_path();
    let status = Command::new(env!("CARGO_BIN_EXE_uniffi-bindgen"))
        .args(["generate", "--no-format", "--language", language, "--out-dir"])
        .arg(out.path())
        .arg(&lib)
        .status()
        .unwrap();
    assert!(status.success(), "uniffi-bindgen failed for {language}");
    std::fs::copy(&lib, out.path().join(lib.file_name().unwrap())).unwrap();
    out
}

fn output_of(mut command: Command, what: &str) -> String {
    let result = command.output().unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    assert!(result.status.success(), "{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&result.stderr));
    stdout
}

/// Runs one Python script against freshly generated bindings; returns what it printed.
fn run_python(script: &str) -> String {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if Command::new(&python).arg("--version").output().is_err() {
        panic!("Python 3 is needed for the binding test: install python3 or set PYTHON");
    }
    let out = bindings("python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script);
    let mut command = Command::new(&python);
    command.arg(script).env("WEFT_BINDINGS_DIR", out.path());
    output_of(command, "python")
}

#[test]
fn python_runs_two_nodes_over_libp2p_and_over_a_python_radio() {
    assert!(run_python("test_node.py").contains("4 passed"));
}

#[test]
fn python_listeners_delay_no_call_hear_when_they_lag_and_end_with_shutdown() {
    assert!(run_python("test_listeners.py").contains("3 passed"));
}

#[test]
fn python_has_what_an_app_needs_beside_sending() {
    assert!(run_python("test_parity.py").contains("3 passed"));
}

#[test]
fn python_links_a_second_device_and_revokes_it() {
    assert!(run_python("test_devices.py").contains("1 passed"));
}

#[test]
fn python_replies_reacts_edits_and_deletes_by_bundle_over_the_mesh_and_over_libp2p_and_wipes() {
    assert!(run_python("test_conversation.py").contains("conversation: 4 passed"));
}

#[test]
fn python_sends_and_saves_files_by_bundle_over_the_mesh_and_over_libp2p() {
    assert!(run_python("test_attachments.py").contains("attachments: 3 passed"));
}

#[test]
fn python_strangers_read_each_other_on_the_nearby_channel() {
    assert!(run_python("test_nearby.py").contains("nearby: 1 passed"));
}

#[test]
fn python_loads_the_real_library() {
    assert!(run_python("test_identity.py").contains("1 passed"));
}

#[test]
fn python_calls_and_callbacks_leave_memory_flat() {
    let report = run_python("test_memory.py");
    println!("{report}");
    assert!(report.contains("memory: 1 passed"));
}

/// A tool the Kotlin test needs, or a panic saying how to install it.
fn required(env: &str, found: Option<PathBuf>, install: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .or(found)
        .filter(|p| p.exists())
        .unwrap_or_else(|| panic!("the Kotlin binding test needs {install} (or set {env})"))
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|p| p.is_file()))
}

#[test]
#[ignore = "needs a JDK, kotlinc and JNA: .ci/run installs them and runs this with --ignored"]
fn kotlin_runs_two_nodes_over_libp2p_over_a_kotlin_radio_and_over_the_android_link_table() {
    let kotlinc = required(
        "KOTLINC",
        on_path("kotlinc"),
        "kotlinc: `npm install -g kotlin-compiler` and put $(npm root -g)/kotlin-compiler/bin on PATH",
    );
    let java = required("JAVA", on_path("java"), "a JDK (17 or later): Debian's openjdk-17-jdk-headless");
    let jna = required("JNA_JAR", Some("/usr/share/java/jna.jar".into()), "JNA: Debian's libjna-java");
    // The compiler's own lib/ has the Kotlin standard library and kotlinx-coroutines, which the
    // generated code's suspend functions use.
    let kotlin_lib = std::fs::canonicalize(&kotlinc).unwrap().parent().unwrap().parent().unwrap().join("lib");
    let coroutines = required(
        "KOTLINX_COROUTINES_JAR",
        Some(kotlin_lib.join("kotlinx-coroutines-core-jvm.jar")),
        "kotlinx-coroutines-core-jvm.jar (it ships in the kotlin-compiler package's lib/)",
    );
    let stdlib = kotlin_lib.join("kotlin-stdlib.jar");

    let out = bindings("kotlin");
    let generated = out.path().join("app/weft/ffi/weft_ffi.kt");
    assert!(generated.exists(), "the Kotlin bindings were not generated at {}", generated.display());
    let test_jar = out.path().join("test.jar");
    let classpath = std::env::join_paths([&jna, &coroutines]).unwrap();
    let mut compile = Command::new(&kotlinc);
    compile.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kotlin/TestNode.kt")).arg(&generated);
    // The Android module's files that use no Android API, run here on the JVM.
    let android = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mobile/android/weft/src/main/kotlin/app/weft");
    for file in ["ble/LinkTable.kt", "ble/ScanSchedule.kt", "WeftEvents.kt", "background/SharedNode.kt"] {
        compile.arg(android.join(file));
    }
    compile.arg("-cp").arg(&classpath).arg("-nowarn").arg("-d").arg(&test_jar);
    output_of(compile, "kotlinc");

    let classpath = std::env::join_paths([&test_jar, &jna, &coroutines, &stdlib]).unwrap();
    let mut run = Command::new(&java);
    run.arg(format!("-Djna.library.path={}", out.path().display())).arg("-cp").arg(&classpath).arg("TestNodeKt");
    let stdout = output_of(run, "the Kotlin test");
    assert!(stdout.contains("kotlin node: 17 passed"), "{stdout}");
}

/// There is no Swift compiler on these machines (nor in Debian 12); what can be checked here is
/// that the Swift bindings generate, with the module map and header an Xcode target needs, and
/// that they declare the API the iOS package and its Bluetooth driver are written against.
#[test]
fn swift_bindings_generate_with_the_api_the_ios_package_uses() {
    let out = bindings("swift");
    let read = |name: &str| {
        std::fs::read_to_string(out.path().join(name)).unwrap_or_else(|_| panic!("{name} was not generated"))
    };
    let swift = read("WeftFFI.swift");
    let header = read("WeftFFIFFI.h");
    let modulemap = read("WeftFFIFFI.modulemap");
    assert!(modulemap.contains("module WeftFFIFFI"), "{modulemap}");
    assert!(header.contains("uniffi_weft_ffi_fn_func_open_node"));
    // The generator's spacing varies between versions; compare without it.
    let squashed = |s: &str| s.split_whitespace().collect::<String>();
    let swift = squashed(&swift);
    for api in [
        "public func openNode(home: String, databaseKey: Data, name: String?) async throws  -> WeftNode",
        "public protocol RadioDriver",
        "public protocol EventListener",
        "func attachRadio(driver: RadioDriver) throws  -> RadioHandle",
        "func linkUp(link: UInt64, mtu: UInt32, initiator: Bool) throws",
        "func frame(link: UInt64, fragment: Data)",
        "func history(conversation: String, before: String?, limit: UInt32) async throws  -> [Message]",
        // What mobile/ios/Sources/Weft/WeftBleRadio.swift calls and implements.
        "func send(link: UInt64, fragment: Data) throws",
        "func disconnect(link: UInt64) throws",
        "func linkDown(link: UInt64)",
        "case Failed(detail: String",
        "case LinkGone",
        "func shutdown()",
        "func detachRadio(radio: RadioHandle) throws",
        // What WeftBackground.swift and WeftEvents.swift call.
        "func syncOnce(deadlineMs: UInt64) async throws  -> SyncReport",
        "func networkChanged()",
        "func subscribe(listener: EventListener) throws  -> Subscription",
        "func cancel()",
        "case lagged(missed: UInt64",
    ] {
        assert!(swift.contains(&squashed(api)), "WeftFFI.swift lacks `{api}`");
    }
}
