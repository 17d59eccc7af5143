package dev.headpose.demo

import android.os.Build

/** The `device` object of a headpose-bench result (benchmarks/schema.py), for an Android phone. */
object DeviceInfo {
    /** LiteRT version this APK was built with (app/build.gradle.kts). */
    const val LITERT_VERSION = "1.4.0"

    fun fingerprint(): MutableMap<String, Any?> {
        val soc = if (Build.VERSION.SDK_INT >= 31) "${Build.SOC_MANUFACTURER} ${Build.SOC_MODEL}" else Build.HARDWARE
        return linkedMapOf(
            "name" to "${Build.MANUFACTURER} ${Build.MODEL}",
            "hostname" to Build.DEVICE,
            "cpu" to soc,
            "board" to Build.BOARD,
            "cores" to Runtime.getRuntime().availableProcessors(),
            "arch" to (Build.SUPPORTED_ABIS.firstOrNull() ?: "unknown"),
            "os" to "Android ${Build.VERSION.RELEASE} (API ${Build.VERSION.SDK_INT}, ${Build.FINGERPRINT})",
            "python" to null,
            "packages" to linkedMapOf("litert" to LITERT_VERSION, "app" to BuildConfigInfo.VERSION),
        )
    }
}

/** App version as recorded in reports (kept in sync with versionName in app/build.gradle.kts). */
object BuildConfigInfo {
    const val VERSION = "0.1.0"
}
