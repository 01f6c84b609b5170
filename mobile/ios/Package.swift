// swift-tools-version:5.9
// Weft for iOS (and macOS): the generated Swift bindings over an XCFramework of the Rust core,
// and a Bluetooth driver over CoreBluetooth. Run ./build-xcframework.sh first: it builds
// WeftFFIFFI.xcframework and writes Sources/WeftFFI/WeftFFI.swift.
import PackageDescription

let package = Package(
    name: "Weft",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "Weft", targets: ["Weft"]),
    ],
    targets: [
        .binaryTarget(name: "WeftFFIFFI", path: "WeftFFIFFI.xcframework"),
        .target(
            name: "WeftFFI",
            dependencies: ["WeftFFIFFI"],
            path: "Sources/WeftFFI",
            // A static Rust library does not carry its framework dependencies: libp2p watches
            // interfaces through SystemConfiguration, and randomness and TLS use Security.
            // (`cargo rustc -p weft-ffi --crate-type staticlib -- --print native-static-libs`
            // lists what the library needs.)
            linkerSettings: [
                .linkedFramework("SystemConfiguration"),
                .linkedFramework("Security"),
                .linkedFramework("CoreFoundation"),
            ]
        ),
        .target(name: "Weft", dependencies: ["WeftFFI"], path: "Sources/Weft"),
    ]
)
