#!/usr/bin/env bash
# Builds WeftFFIFFI.xcframework (the Rust core as static libraries for iOS devices, the iOS
# simulator and macOS, with the C header and module map) and generates the Swift bindings into
# Sources/WeftFFI. Runs on a Mac with Xcode and the Rust targets:
#   rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
[ "$(uname -s)" = Darwin ] || { echo "an XCFramework is built on macOS with Xcode" >&2; exit 1; }
# The `mobile` Cargo profile (LTO, no debug info; see mobile/README.md); WEFT_CARGO_PROFILE=release
# builds with the plain release profile.
profile="${WEFT_CARGO_PROFILE:-mobile}"

# Each target is built as its own command, so that a failed build stops the script here
# (inside $(...) a failure would go unnoticed and an old library would be packaged).
for target in aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin; do
  cargo rustc --profile "$profile" --locked -p weft-ffi --lib --crate-type staticlib --target "$target"
done
lib() { echo "target/$1/$profile/libweft_ffi.a"; }
device="$(lib aarch64-apple-ios)"
mkdir -p target/xcframework
lipo -create "$(lib aarch64-apple-ios-sim)" "$(lib x86_64-apple-ios)" -output target/xcframework/libweft_ffi-sim.a
lipo -create "$(lib aarch64-apple-darwin)" "$(lib x86_64-apple-darwin)" -output target/xcframework/libweft_ffi-macos.a

# The bindings come from the library's own metadata, read from a host build.
cargo build --release --locked -p weft-ffi --lib
generated=target/xcframework/swift
rm -rf "$generated"
cargo run --release -q -p weft-ffi --bin uniffi-bindgen -- \
  generate --no-format --language swift --out-dir "$generated" target/release/libweft_ffi.dylib
headers=target/xcframework/headers
rm -rf "$headers" && mkdir -p "$headers"
cp "$generated/WeftFFIFFI.h" "$headers/"
cp "$generated/WeftFFIFFI.modulemap" "$headers/module.modulemap"
cp "$generated/WeftFFI.swift" "$here/Sources/WeftFFI/WeftFFI.swift"

rm -rf "$here/WeftFFIFFI.xcframework"
xcodebuild -create-xcframework \
  -library "$device" -headers "$headers" \
  -library target/xcframework/libweft_ffi-sim.a -headers "$headers" \
  -library target/xcframework/libweft_ffi-macos.a -headers "$headers" \
  -output "$here/WeftFFIFFI.xcframework"
echo "built $here/WeftFFIFFI.xcframework and Sources/WeftFFI/WeftFFI.swift"
