// Weft for Android: the generated Kotlin bindings, libweft_ffi.so for each ABI, and the
// Bluetooth driver (app.weft.ble.WeftBleRadio). `../build-native.sh` fills build/generated/weft
// with the first two; the `weftNative` task runs it before every build. Gradle 8.9 or later
// (what AGP 8.7 needs); there is no wrapper in the repository.
plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "app.weft"
    compileSdk = 35
    defaultConfig {
        minSdk = 26
        consumerProguardFiles("consumer-rules.pro")
    }
    sourceSets["main"].apply {
        java.srcDirs("src/main/kotlin", "build/generated/weft/kotlin")
        jniLibs.srcDirs("build/generated/weft/jniLibs")
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin {
    // A target, not a toolchain: builds with whatever JDK 17+ runs Gradle (Android Studio's own).
    compilerOptions { jvmTarget.set(org.jetbrains.kotlin.gradle.dsl.JvmTarget.JVM_17) }
}

dependencies {
    // uniffi's generated Kotlin calls the library through JNA and awaits through coroutines.
    api("net.java.dev.jna:jna:5.15.0@aar")
    api("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.9.0")
}

val weftNative by tasks.registering(Exec::class) {
    description = "Builds libweft_ffi.so per ABI with cargo-ndk and generates the Kotlin bindings"
    // Relative to this module, so it works when an app includes the module from elsewhere.
    commandLine(file("../build-native.sh").path, layout.buildDirectory.dir("generated/weft").get().asFile.path)
}
tasks.named("preBuild") { dependsOn(weftNative) }
