// headpose-edge Android demo: open this folder (android_demo/) in Android Studio.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google() // LiteRT (com.google.ai.edge.litert) and CameraX are on Google's Maven
        mavenCentral()
    }
}

rootProject.name = "headpose-demo"
include(":core") // plain Java: manifest, SCRFD decode, crops, rotation, smoothing (no Android)
include(":app")
