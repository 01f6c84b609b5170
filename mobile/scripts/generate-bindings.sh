#!/usr/bin/env bash
# Builds weft-ffi and generates its Kotlin, Swift and Python bindings with the in-repo
# uniffi-bindgen (which always matches the uniffi version the library was built with).
#   mobile/scripts/generate-bindings.sh [OUT_DIR]   (default: target/bindings)
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-target/bindings}"
cargo build --release -p weft-ffi
case "$(uname -s)" in
  Darwin) lib=target/release/libweft_ffi.dylib ;;
  *) lib=target/release/libweft_ffi.so ;;
esac
for language in kotlin swift python; do
  cargo run --release -q -p weft-ffi --bin uniffi-bindgen -- generate --no-format --language "$language" --out-dir "$out/$language" "$lib"
done
cp "$lib" "$out/python/"
echo "bindings in $out/{kotlin,swift,python}"
