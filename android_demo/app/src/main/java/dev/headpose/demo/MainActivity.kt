package dev.headpose.demo

import android.Manifest
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.graphics.Matrix
import android.os.Bundle
import android.util.Log
import android.util.Size
import android.view.View
import android.widget.Toast
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.resolutionselector.AspectRatioStrategy
import androidx.camera.core.resolutionselector.ResolutionSelector
import androidx.camera.core.resolutionselector.ResolutionStrategy
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.core.content.ContextCompat
import dev.headpose.core.BenchReport
import dev.headpose.core.Frame
import dev.headpose.core.HeadposeException
import dev.headpose.core.Json
import dev.headpose.demo.databinding.ActivityMainBinding
import java.io.File
import java.nio.ByteBuffer
import java.text.SimpleDateFormat
import java.util.Date
import java.util.Locale
import java.util.TimeZone
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * Live head pose: CameraX frames -> [HeadPosePipeline] (LiteRT) -> [OverlayView].
 *
 * Buttons: flip front/back camera, cycle the pose model among the artifacts in assets, GPU delegate
 * on/off, and Record / Stop & save, which writes a headpose-bench JSON (see README.md) to
 * `Android/data/dev.headpose.demo/files/bench/`.
 */
class MainActivity : AppCompatActivity() {
    private lateinit var binding: ActivityMainBinding
    private lateinit var analysisExecutor: ExecutorService
    private var cameraProvider: ProcessCameraProvider? = null

    private var artifacts: List<AssetArtifact> = emptyList()
    private var detector: AssetArtifact? = null
    private var poseModels: List<AssetArtifact> = emptyList()
    private var poseIndex = 0
    private var useGpu = false
    private var lensFacing = CameraSelector.LENS_FACING_FRONT
    private val threads = Runtime.getRuntime().availableProcessors().coerceIn(1, 4)

    // touched only on analysisExecutor
    private var pipeline: HeadPosePipeline? = null
    private var recording = false
    private var recordStartUtc = ""
    private var frameBytes = ByteArray(0)

    private val permission = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else showMessage(getString(R.string.camera_permission_needed))
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        binding = ActivityMainBinding.inflate(layoutInflater)
        setContentView(binding.root)
        analysisExecutor = Executors.newSingleThreadExecutor()

        try {
            artifacts = AssetArtifacts.list(assets)
        } catch (e: HeadposeException) {
            showMessage(e.message ?: e.toString())
            return
        }
        detector = AssetArtifacts.detectors(artifacts).firstOrNull()
        poseModels = AssetArtifacts.poseModels(artifacts)
        if (detector == null || poseModels.isEmpty()) {
            showMessage(getString(R.string.no_artifacts))
            return
        }
        rebuildPipeline()

        binding.switchCamera.setOnClickListener {
            lensFacing = if (lensFacing == CameraSelector.LENS_FACING_FRONT) CameraSelector.LENS_FACING_BACK
            else CameraSelector.LENS_FACING_FRONT
            analysisExecutor.execute { pipeline?.reset() } // new view: new tracks, new timings
            bindCamera()
        }
        binding.model.setOnClickListener {
            poseIndex = (poseIndex + 1) % poseModels.size
            rebuildPipeline()
        }
        binding.gpu.setOnCheckedChangeListener { _, checked ->
            useGpu = checked
            rebuildPipeline()
        }
        binding.record.setOnClickListener { toggleRecording() }

        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            permission.launch(Manifest.permission.CAMERA)
        }
    }

    private fun showMessage(text: String) {
        binding.message.text = text
        binding.message.visibility = View.VISIBLE
    }

    /** (Re)create the interpreters on the analysis thread with the current model/accelerator. */
    private fun rebuildPipeline() {
        val det = detector ?: return
        val pose = poseModels[poseIndex]
        val acc = if (useGpu) Accelerator.GPU else Accelerator.XNNPACK
        binding.model.text = pose.manifest.model
        analysisExecutor.execute {
            pipeline?.close()
            pipeline = null
            recording = false
            try {
                pipeline = HeadPosePipeline(assets, det, pose, threads, acc)
                if (acc == Accelerator.GPU && pipeline?.accelerator != Accelerator.GPU) {
                    runOnUiThread { toast("GPU delegate not supported here: running on CPU (XNNPACK)") }
                }
            } catch (e: Exception) {
                Log.e(TAG, "could not load models", e)
                runOnUiThread { showMessage("${pose.manifest.id}: ${e.message}") }
            }
            runOnUiThread { binding.record.text = getString(R.string.record) }
        }
    }

    private fun startCamera() {
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            cameraProvider = future.get()
            bindCamera()
        }, ContextCompat.getMainExecutor(this))
    }

    private fun bindCamera() {
        val provider = cameraProvider ?: return
        val selector = ResolutionSelector.Builder()
            .setAspectRatioStrategy(AspectRatioStrategy.RATIO_4_3_FALLBACK_AUTO_STRATEGY)
            .setResolutionStrategy(
                ResolutionStrategy(Size(640, 480), ResolutionStrategy.FALLBACK_RULE_CLOSEST_HIGHER_THEN_LOWER)
            )
            .build()
        val analysis = ImageAnalysis.Builder()
            .setResolutionSelector(selector)
            .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
            .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
            .build()
        val front = lensFacing == CameraSelector.LENS_FACING_FRONT
        analysis.setAnalyzer(analysisExecutor) { image -> analyze(image, front) }
        provider.unbindAll()
        val camera = CameraSelector.Builder().requireLensFacing(lensFacing).build()
        try {
            provider.bindToLifecycle(this, camera, analysis)
        } catch (e: IllegalArgumentException) {
            toast("no ${if (front) "front" else "back"} camera on this device")
        }
    }

    /** Runs on [analysisExecutor] for every frame CameraX delivers. */
    private fun analyze(image: ImageProxy, mirror: Boolean) {
        val p = pipeline
        if (p == null) {
            image.close()
            return
        }
        val t0 = System.nanoTime()
        val timeS = image.imageInfo.timestamp / 1e9
        // capture: CameraX RGBA -> upright (mirrored for the selfie camera) bitmap -> RGBA bytes
        val upright: Bitmap = try {
            val raw = image.toBitmap()
            val m = Matrix()
            m.postRotate(image.imageInfo.rotationDegrees.toFloat())
            if (mirror) m.postScale(-1f, 1f)
            Bitmap.createBitmap(raw, 0, 0, raw.width, raw.height, m, false)
        } finally {
            image.close()
        }
        val needed = upright.rowBytes * upright.height
        if (frameBytes.size != needed) frameBytes = ByteArray(needed)
        upright.copyPixelsToBuffer(ByteBuffer.wrap(frameBytes))
        val frame = Frame.rgba(frameBytes, upright.width, upright.height, upright.rowBytes)
        val captureMs = (System.nanoTime() - t0) / 1e6
        p.recorder.stage("capture", captureMs)

        val faces = try {
            p.process(frame, timeS)
        } catch (e: HeadposeException) {
            Log.e(TAG, "pipeline", e)
            runOnUiThread { showMessage(e.message ?: e.toString()) }
            return
        }
        val drawMs = binding.overlay.lastDrawMs // the previous frame's drawing, measured on the UI thread
        p.recorder.stage("draw", drawMs)
        val e2e = (System.nanoTime() - t0) / 1e6 + drawMs
        p.recorder.frame(e2e, faces.size, System.nanoTime())
        val lines = statusLines(p, faces.size)
        runOnUiThread { binding.overlay.show(upright, faces, lines) }
    }

    private fun statusLines(p: HeadPosePipeline, nFaces: Int): List<String> {
        val r = p.recorder
        fun ms(stage: String) = r.recentMean(stage, 30).let { if (it.isNaN()) "  -  " else "%5.1f".format(it) }
        return listOf(
            "${p.detModel.manifest.id} + ${p.poseModel.manifest.id}",
            "%s t%d  %.1f FPS  %d faces%s".format(p.accelerator.label, p.threads, r.fps(), nFaces,
                if (recording) "  REC ${r.frames()}" else ""),
            "cap ${ms("capture")} pre ${ms("detector_preprocess")} det ${ms("detector")} dec ${ms("decode")}",
            "crop ${ms("crop")} pose ${ms("pose")} smooth ${ms("smoothing")} draw ${ms("draw")}",
            "end-to-end ${ms("end_to_end")} ms",
        )
    }

    private fun toggleRecording() {
        analysisExecutor.execute {
            val p = pipeline ?: return@execute
            if (!recording) {
                p.reset()
                recording = true
                recordStartUtc = utcNow()
                runOnUiThread { binding.record.text = getString(R.string.stop) }
            } else {
                recording = false
                val msg = try {
                    "saved ${saveReport(p).absolutePath}"
                } catch (e: HeadposeException) {
                    e.message ?: e.toString()
                }
                runOnUiThread {
                    binding.record.text = getString(R.string.record)
                    toast(msg)
                }
            }
        }
    }

    /** Write the recorded run as a headpose-bench v1 result (atomically: temp file, then rename). */
    private fun saveReport(p: HeadPosePipeline): File {
        val det = p.detModel.manifest
        val pose = p.poseModel.manifest
        val acc = p.accelerator.label
        val pipelineEntry = p.recorder.pipeline("litert", det, pose, p.threads, acc, p.detectEvery, p.smooth, p.loadMs, true)
        val latency = ArrayList<Map<String, Any>>()
        val detRuns = p.engine.detectorRuns()
        if (detRuns.isNotEmpty()) {
            latency += BenchReport.modelLatency(det, "litert", p.threads, acc, 1, p.loadMs, p.engine.detectorFirstMs(), detRuns)
        }
        val poseRuns = p.engine.poseRuns()
        if (poseRuns.isNotEmpty()) {
            latency += BenchReport.modelLatency(pose, "litert", p.threads, acc, 1, p.loadMs, p.engine.poseFirstMs(), poseRuns)
        }
        val result = BenchReport.result(
            DeviceInfo.fingerprint(), recordStartUtc, "headpose android_demo", BuildConfigInfo.VERSION,
            listOf(BenchReport.artifact(det, "released"), BenchReport.artifact(pose, "trained")),
            latency, listOf(pipelineEntry),
            listOf(
                "live camera run on the phone (${if (lensFacing == CameraSelector.LENS_FACING_FRONT) "front" else "back"} camera)",
                "capture = CameraX RGBA to upright bitmap; draw = previous frame's onDraw; load_ms covers both models",
            ),
        )
        val dir = File(getExternalFilesDir(null), "bench").apply { mkdirs() }
        val file = File(dir, "${result["run_id"]}.json")
        val tmp = File(dir, ".${file.name}.tmp")
        tmp.writeText(Json.write(result), Charsets.UTF_8)
        if (!tmp.renameTo(file)) throw HeadposeException("could not rename $tmp to $file")
        return file
    }

    private fun utcNow(): String = SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss'Z'", Locale.US)
        .apply { timeZone = TimeZone.getTimeZone("UTC") }.format(Date())

    private fun toast(text: String) = Toast.makeText(this, text, Toast.LENGTH_LONG).show()

    override fun onDestroy() {
        super.onDestroy()
        cameraProvider?.unbindAll()
        analysisExecutor.execute { pipeline?.close(); pipeline = null }
        analysisExecutor.shutdown()
    }

    companion object {
        private const val TAG = "headpose"
    }
}
