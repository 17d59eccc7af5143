package dev.headpose.demo

import android.content.res.AssetManager
import dev.headpose.core.HeadposeException
import dev.headpose.core.Manifest
import java.io.FileInputStream
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import java.security.MessageDigest

/**
 * One artifact directory in the APK's assets: `assets/<artifact id>/manifest.json` plus its model
 * file, exactly as `headpose convert ... --out android_demo/app/src/main/assets` writes it.
 */
class AssetArtifact(val dir: String, val manifest: Manifest) {

    /**
     * Memory-map the model file (assets are stored uncompressed for `.tflite`, see app/build.gradle.kts)
     * and check its SHA-256 against the manifest.
     */
    fun mapModel(assets: AssetManager): MappedByteBuffer {
        val path = "$dir/${manifest.file}"
        val fd = try {
            assets.openFd(path)
        } catch (e: java.io.IOException) {
            throw HeadposeException.ManifestException(
                "asset '$path' could not be opened uncompressed (${e.message}): the manifest names " +
                    "'${manifest.file}'; copy the whole artifact folder and keep noCompress \"tflite\""
            )
        }
        val buf: MappedByteBuffer = fd.use { afd ->
            FileInputStream(afd.fileDescriptor).use { stream ->
                stream.channel.map(FileChannel.MapMode.READ_ONLY, afd.startOffset, afd.declaredLength)
            }
        }
        if (manifest.fileSha256.isNotEmpty()) {
            val digest = MessageDigest.getInstance("SHA-256")
            digest.update(buf.duplicate())
            val found = digest.digest().joinToString("") { b -> "%02x".format(b) }
            if (found != manifest.fileSha256) {
                throw HeadposeException.ManifestException(
                    "'$path' has SHA-256 $found but its manifest expects ${manifest.fileSha256}: " +
                        "the model file and manifest.json come from different conversions; copy the " +
                        "artifact folder again"
                )
            }
        }
        return buf
    }

    override fun toString(): String = manifest.id
}

/** Finds the artifacts shipped in the APK's assets. */
object AssetArtifacts {

    /**
     * Every `assets/<dir>/manifest.json` that parses, with TFLite models only.
     *
     * @throws HeadposeException.ManifestException for a manifest that does not parse (with the reason)
     */
    fun list(assets: AssetManager): List<AssetArtifact> {
        val found = mutableListOf<AssetArtifact>()
        for (dir in assets.list("")?.sorted() ?: emptyList()) {
            val files = assets.list(dir) ?: continue
            if (Manifest.MANIFEST_NAME !in files) continue
            val text = assets.open("$dir/${Manifest.MANIFEST_NAME}").bufferedReader(Charsets.UTF_8).use { it.readText() }
            val m = Manifest.parse(text, "assets/$dir/${Manifest.MANIFEST_NAME}")
            if (m.format != "tflite") continue // ONNX/Core ML artifacts are for other runtimes
            found += AssetArtifact(dir, m)
        }
        return found
    }

    fun detectors(all: List<AssetArtifact>) = all.filter { it.manifest.task == "face_detection" }

    /** Pose models, smallest precision first (int8 before fp32) so the default is the fastest. */
    fun poseModels(all: List<AssetArtifact>) = all.filter { it.manifest.task == "head_pose" }
        .sortedWith(compareBy({ it.manifest.model }, { if (it.manifest.precision.contains("int8")) 0 else 1 }))
}
