package dev.headpose.demo

import android.content.res.AssetManager
import dev.headpose.core.FaceResult
import dev.headpose.core.Frame
import dev.headpose.core.HeadPoseEngine
import dev.headpose.core.LatencyRecorder
import java.io.Closeable

/**
 * The two LiteRT interpreters plugged into the core [HeadPoseEngine]. All the logic (letterbox,
 * SCRFD decode, tracking, crops, 6D -> rotation, One-Euro smoothing, axes) is the core module's, the
 * same code the golden-vector test replays against the Python estimator; this class only loads
 * the models.
 *
 * Not thread-safe: create, call and close it on one thread (the camera analysis executor).
 */
class HeadPosePipeline(
    assets: AssetManager,
    detector: AssetArtifact,
    pose: AssetArtifact,
    val threads: Int,
    accelerator: Accelerator,
    val smooth: Boolean = true,
    val detectEvery: Int = 1,
    maxFaces: Int = 8,
) : Closeable {
    val detModel: TfliteModel
    val poseModel: TfliteModel
    /** Time to load both interpreters (ms). */
    val loadMs: Double
    val recorder = LatencyRecorder()
    val engine: HeadPoseEngine

    init {
        val t0 = System.nanoTime()
        detModel = TfliteModel(detector, detector.mapModel(assets), threads, accelerator)
        poseModel = try {
            TfliteModel(pose, pose.mapModel(assets), threads, accelerator)
        } catch (e: Exception) {
            detModel.close()
            throw e
        }
        loadMs = (System.nanoTime() - t0) / 1e6
        engine = HeadPoseEngine(detector.manifest, detModel, pose.manifest, poseModel, detectEvery, smooth,
            maxFaces, recorder)
    }

    /** Which accelerator actually runs (GPU may have fallen back to XNNPACK). */
    val accelerator: Accelerator get() = poseModel.accelerator

    /** Start a new run: forget tracks, smoothing state and every recorded timing. */
    fun reset() {
        engine.reset()
        recorder.clear()
    }

    /**
     * Estimate every face of one upright frame.
     *
     * @param frame  RGBA pixels wrapped by [Frame]
     * @param timeS  capture time in seconds (for the One-Euro filter)
     */
    fun process(frame: Frame, timeS: Double): List<FaceResult> = engine.process(frame, timeS)

    override fun close() {
        detModel.close()
        poseModel.close()
    }
}
