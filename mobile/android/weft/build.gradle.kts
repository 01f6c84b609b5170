// Weft for Android: the generated Kotlin bindings, libweft_ffi.so for each ABI, the Bluetooth
// driver (app.weft.ble) and the background layer (app.weft.background). `../build-native.sh`
// fills build/generated/weft with the first two; the `weftNative` task runs it before a build
// when the Rust sources changed. Gradle 8.9 or later (what AGP 8.7 needs): see
// mobile/README.md for the wrapper.
plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
}

val generated = layout.buildDirectory.dir("generated/weft")

android {
    namespace = "app.weft"
    compileSdk = 35
    defaultConfig {
        minSdk = 26
        consumerProguardFiles("consumer-rules.pro")
    }
    sourceSets["main"].apply {
        java.srcDirs("src/main/kotlin", generated.map { it.dir("kotlin") })
        jniLibs.srcDirs(generated.map { it.dir("jniLibs") })
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    packaging {
        // The libraries are stripped by Cargo's `mobile` profile already; AGP would look for
        // the NDK's strip otherwise.
        jniLibs.keepDebugSymbols += "**/libweft_ffi.so"
    }
}

kotlin {
    // A target, not a toolchain: builds with whatever JDK 17+ runs Gradle (Android Studio's own).
    compilerOptions { jvmTarget.set(org.jetbrains.kotlin.gradle.dsl.JvmTarget.JVM_17) }
}

dependencies {
    // uniffi's generated Kotlin calls the library through JNA and awaits through coroutines;
    // with `android = true` (uniffi-android.toml) it also uses androidx.annotation.
    api("net.java.dev.jna:jna:5.15.0@aar")
    api("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.9.0")
    implementation("androidx.annotation:annotation:1.9.1")
    // The mesh service's notification and startForeground with a type (ServiceCompat).
    implementation("androidx.core:core-ktx:1.15.0")
    // Periodic and woken sync (WeftSyncWorker).
    api("androidx.work:work-runtime-ktx:2.10.0")
}

// The repository, from this module (mobile/android/weft), wherever the app includes it from.
val repo = projectDir.resolve("../../..").normalize()

val weftNative by tasks.registering(Exec::class) {
    description = "Builds libweft_ffi.so per ABI with cargo-ndk and generates the Kotlin bindings"
    // Declared so that Gradle skips the task when nothing changed (cargo is quick then too,
    // but the bindings would be regenerated and every Kotlin file recompiled).
    inputs.files(
        fileTree(repo.resolve("core")) { include("src/**", "Cargo.toml", "build.rs") },
        fileTree(repo.resolve("ffi")) { include("src/**", "Cargo.toml", "uniffi.toml") },
        repo.resolve("Cargo.toml"),
        repo.resolve("Cargo.lock"),
        file("../build-native.sh"),
        file("../uniffi-android.toml"),
    ).withPropertyName("rustSources").withPathSensitivity(PathSensitivity.RELATIVE)
    inputs.property("abis", providers.environmentVariable("WEFT_ANDROID_ABIS").orElse("all"))
    inputs.property("profile", providers.environmentVariable("WEFT_CARGO_PROFILE").orElse("mobile"))
    outputs.dir(generated).withPropertyName("generated")
    // Relative to this module, so it works when an app includes the module from elsewhere.
    commandLine(file("../build-native.sh").path, generated.get().asFile.path)
}
tasks.named("preBuild") { dependsOn(weftNative) }
