#!/usr/bin/env bash
# Builds libweft_ffi.so for each Android ABI with cargo-ndk and generates the Kotlin bindings
# with the in-repo uniffi-bindgen.
#   mobile/android/build-native.sh OUT_DIR      (OUT_DIR/jniLibs/<abi>/, OUT_DIR/kotlin/)
# Needs: the Android NDK (ANDROID_NDK_HOME; r27 or later), `cargo install cargo-ndk`, and the
# Rust targets (`rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android`).
#   WEFT_ANDROID_ABIS="arm64-v8a"   one ABI while iterating (default: all three)
#   WEFT_CARGO_PROFILE=release      the profile (default `mobile`: stripped, LTO; see mobile/README.md)
set -euo pipefail
mkdir -p "${1:?usage: build-native.sh OUT_DIR}"
out="$(cd "$1" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
command -v cargo-ndk >/dev/null || { echo "needs cargo-ndk: cargo install cargo-ndk" >&2; exit 1; }
[ -n "${ANDROID_NDK_HOME:-}" ] || { echo "needs ANDROID_NDK_HOME (the Android NDK)" >&2; exit 1; }
abis="${WEFT_ANDROID_ABIS:-arm64-v8a armeabi-v7a x86_64}"
profile="${WEFT_CARGO_PROFILE:-mobile}"
targets=()
for abi in $abis; do targets+=(-t "$abi"); done

# 16 KB pages: Google Play requires apps targeting Android 15+ to run on devices with 16 KB
# pages, so every LOAD segment of the library is aligned to 16 KB (a multiple of 4 KB, so it
# still loads on 4 KB devices). Per target, not RUSTFLAGS: the host build of uniffi-bindgen
# below keeps its flags (and its cache). A RUSTFLAGS in the environment would override these.
page="-C link-arg=-Wl,-z,max-page-size=16384"
export CARGO_TARGET_AARCH64_LINUX_ANDROID_RUSTFLAGS="$page"
export CARGO_TARGET_ARMV7_LINUX_ANDROIDEABI_RUSTFLAGS="$page"
export CARGO_TARGET_X86_64_LINUX_ANDROID_RUSTFLAGS="$page"
export CARGO_TARGET_I686_LINUX_ANDROID_RUSTFLAGS="$page"

cargo ndk "${targets[@]}" --platform 26 -o "$out/jniLibs" build --locked --profile "$profile" -p weft-ffi --lib

# The bindings come from the library's metadata, read from a host build (the Android
# libraries are stripped); the same source gives the same metadata on every target.
cargo build --locked --release -p weft-ffi --lib --bin uniffi-bindgen
case "$(uname -s)" in
  Darwin) host_lib=target/release/libweft_ffi.dylib ;;
  *) host_lib=target/release/libweft_ffi.so ;;
esac
rm -rf "$out/kotlin"
target/release/uniffi-bindgen generate --no-format --language kotlin \
  --config "$here/uniffi-android.toml" --out-dir "$out/kotlin" "$host_lib"
echo "Android libraries in $out/jniLibs, Kotlin bindings in $out/kotlin"
