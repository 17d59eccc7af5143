package dev.headpose.demo

import android.content.res.AssetManager
import dev.headpose.core.Axes
import dev.headpose.core.Face
import dev.headpose.core.Frame
import dev.headpose.core.IoUTracker
import dev.headpose.core.LatencyRecorder
import dev.headpose.core.Preprocess
import dev.headpose.core.Rotation
import dev.headpose.core.Scrfd
import java.io.Closeable

/** One face of one frame, in frame pixels. */
class FaceResult(
    val trackId: Int,
    /** Detected box x1, y1, x2, y2. */
    val box: FloatArray,
    val score: Float,
    /** Five keypoints x0, y0 ... x4, y4. */
    val keypoints: FloatArray,
    /** Smoothed (or raw, when smoothing is off) angles in degrees. */
    val pitch: Double,
    val yaw: Double,
    val roll: Double,
    /** cx, cy, x-axis end, y-axis end, z-axis end (see [Axes.points]). */
    val axes: IntArray,
)

/**
 * Detector + pose model + tracker + One-Euro smoothing. All the maths is the `core` module's
 * (the same code the golden-vector test checks against the Python runtime); this class only moves
 * buffers between it and the interpreters and times each stage.
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
    val maxFaces: Int = 8,
) : Closeable {
    val detModel: TfliteModel
    val poseModel: TfliteModel
    val loadMs: Double
    private val scrfd: Scrfd
    private val strides: IntArray
    private val scoreNames: List<String>
    private val bboxNames: List<String>
    private val kpsNames: List<String?>
    private val ortho6d: String
    private val margin: Double
    private val detInput: FloatArray
    private val poseInput: FloatArray
    private val tracker = IoUTracker()
    val recorder = LatencyRecorder()
    /** Per-invocation model timings (ms) for the report's model_latency entries. */
    val detectorRuns = ArrayList<Double>()
    val poseRuns = ArrayList<Double>()
    var detectorFirstMs = Double.NaN
        private set
    var poseFirstMs = Double.NaN
        private set

    init {
        val t0 = System.nanoTime()
        detModel = TfliteModel(detector, detector.mapModel(assets), threads, accelerator)
        poseModel = TfliteModel(pose, pose.mapModel(assets), threads, accelerator)
        loadMs = (System.nanoTime() - t0) / 1e6
        val dm = detector.manifest.expectTask("face_detection")
        val pm = pose.manifest.expectTask("head_pose")
        scrfd = Scrfd.fromManifest(dm)
        strides = scrfd.strides()
        scoreNames = strides.map { dm.output("score", it).name }
        bboxNames = strides.map { dm.output("bbox", it).name }
        kpsNames = strides.map { if (dm.hasOutput("kps", it)) dm.output("kps", it).name else null }
        ortho6d = pm.output("ortho6d", 0).name
        margin = pm.cropMargin()
        detInput = FloatArray(dm.input.elementCount())
        poseInput = FloatArray(pm.input.height() * pm.input.width() * 3)
    }

    /** Which accelerator actually runs (GPU may have fallen back to XNNPACK). */
    val accelerator: Accelerator get() = poseModel.accelerator

    /** Start a new run: forget tracks and every recorded timing. */
    fun reset() {
        tracker.reset()
        recorder.clear()
        detectorRuns.clear()
        poseRuns.clear()
    }

    private inline fun <T> timed(stage: String, block: () -> T): T {
        val t0 = System.nanoTime()
        val r = block()
        recorder.stage(stage, (System.nanoTime() - t0) / 1e6)
        return r
    }

    /**
     * Estimate every face of one upright frame.
     *
     * @param frame  RGBA (or any) pixels wrapped by [Frame]
     * @param timeS  capture time in seconds (for the One-Euro filter)
     */
    fun process(frame: Frame, timeS: Double): List<FaceResult> {
        val scale = timed("detector_preprocess") { Preprocess.letterbox(frame, detModel.manifest.input, detInput, 0) }
        val t0 = System.nanoTime()
        val raw = detModel.run(detInput)
        val detMs = (System.nanoTime() - t0) / 1e6
        recorder.stage("detector", detMs)
        if (detectorFirstMs.isNaN()) detectorFirstMs = detMs else detectorRuns += detMs
        val faces: List<Face> = timed("decode") {
            scrfd.decode(
                Array(strides.size) { raw.getValue(scoreNames[it]) },
                Array(strides.size) { raw.getValue(bboxNames[it]) },
                Array(strides.size) { i -> kpsNames[i]?.let { raw.getValue(it) } },
                scale, maxFaces,
            )
        }
        val tracks = tracker.update(faces)
        val out = ArrayList<FaceResult>(faces.size)
        var cropMs = 0.0
        var poseMs = 0.0
        var smoothMs = 0.0
        for ((i, face) in faces.withIndex()) {
            var t = System.nanoTime()
            val cropBox = Preprocess.cropFace(frame, face.box(), margin, poseModel.manifest.input, poseInput, 0)
            cropMs += (System.nanoTime() - t) / 1e6
            if (cropBox == null) continue
            t = System.nanoTime()
            val v6 = poseModel.run(poseInput).getValue(ortho6d)
            val runMs = (System.nanoTime() - t) / 1e6
            poseMs += runMs
            if (poseFirstMs.isNaN()) poseFirstMs = runMs else poseRuns += runMs
            t = System.nanoTime()
            var r = Rotation.fromSixD(v6, 0)
            if (smooth) r = tracks[i].smoother.smooth(r, timeS)
            val e = Rotation.toEuler(r) // pitch, yaw, roll
            smoothMs += (System.nanoTime() - t) / 1e6
            val expanded = Preprocess.expandBox(face.box(), margin)
            val axesBox = floatArrayOf(expanded[0].toFloat(), expanded[1].toFloat(), expanded[2].toFloat(), expanded[3].toFloat())
            out += FaceResult(tracks[i].id, face.box(), face.score, face.keypoints, e[0], e[1], e[2],
                Axes.points(e[1], e[0], e[2], axesBox, 0.5))
        }
        recorder.stage("crop", cropMs)
        recorder.stage("pose", poseMs)
        recorder.stage("smoothing", smoothMs)
        return out
    }

    override fun close() {
        detModel.close()
        poseModel.close()
    }
}
