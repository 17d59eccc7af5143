// Pure logic shared with the Python runtime: no Android dependency, no third-party library.
// Java 11 so that Android's D8 desugaring takes it at any minSdk. The same sources are compiled
// with plain javac and checked against golden vectors by tests/android/test_core_golden.py.
plugins {
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_11
    targetCompatibility = JavaVersion.VERSION_11
}

// `./gradlew :core:goldenCheck -Pgolden=DIR` runs the golden runner on vectors written by
// `python tests/android/android_golden.py DIR` (the pytest test does the comparison).
tasks.register<JavaExec>("goldenCheck") {
    group = "verification"
    description = "Run GoldenRunner on golden vectors written by the Python runtime"
    classpath = sourceSets["test"].runtimeClasspath
    mainClass.set("dev.headpose.core.GoldenRunner")
    val dir = (project.findProperty("golden") as String?) ?: "build/golden"
    args(dir, "$dir/java")
}
