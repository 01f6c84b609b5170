#!/usr/bin/env bash
# Builds libweft_ffi.so for each Android ABI with cargo-ndk and generates the Kotlin bindings
# from it with the in-repo uniffi-bindgen.
#   mobile/android/build-native.sh OUT_DIR      (OUT_DIR/jniLibs/<abi>/, OUT_DIR/kotlin/)
# Needs: the Android NDK (ANDROID_NDK_HOME), `cargo install cargo-ndk`, and the Rust targets
# (`rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android`).
set -euo pipefail
mkdir -p "${1:?usage: build-native.sh OUT_DIR}"
out="$(cd "$1" && pwd)"
cd "$(dirname "$0")/../.."
command -v cargo-ndk >/dev/null || { echo "needs cargo-ndk: cargo install cargo-ndk" >&2; exit 1; }
[ -n "${ANDROID_NDK_HOME:-}" ] || { echo "needs ANDROID_NDK_HOME (the Android NDK)" >&2; exit 1; }
abis="${WEFT_ANDROID_ABIS:-arm64-v8a armeabi-v7a x86_64}"
targets=()
for abi in $abis; do targets+=(-t "$abi"); done
cargo ndk "${targets[@]}" --platform 26 -o "$out/jniLibs" build --release -p weft-ffi --lib
# The bindings come from the library's own metadata; any one ABI's library has the same.
first="$(find "$out/jniLibs" -name libweft_ffi.so | head -1)"
cargo run --release -q -p weft-ffi --bin uniffi-bindgen -- \
  generate --no-format --language kotlin --out-dir "$out/kotlin" "$first"
echo "Android libraries in $out/jniLibs, Kotlin bindings in $out/kotlin"
