package dev.headpose.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Matrix
import android.graphics.Paint
import android.graphics.RectF
import android.util.AttributeSet
import android.view.View
import dev.headpose.core.FaceResult
import kotlin.math.max

/**
 * Draws the analysed (upright) camera frame scaled to fill the view, and on it the face boxes, head
 * axes (x red, y green, z blue, as the Python `draw_axis`), yaw/pitch/roll per face, and a status
 * block: models, accelerator, FPS and per-stage latency.
 */
class OverlayView @JvmOverloads constructor(
    context: Context, attrs: AttributeSet? = null,
) : View(context, attrs) {

    private var frame: Bitmap? = null
    private var faces: List<FaceResult> = emptyList()
    private var status: List<String> = emptyList()
    private val toView = Matrix()
    private val pts = FloatArray(8)

    /** Milliseconds the last [onDraw] took (read by the analysis thread for the `draw` stage). */
    @Volatile
    var lastDrawMs: Double = 0.0
        private set

    private val boxPaint = Paint().apply {
        style = Paint.Style.STROKE; strokeWidth = 4f; color = Color.rgb(255, 200, 0); isAntiAlias = true
    }
    private val axisPaints = listOf(Color.RED, Color.GREEN, Color.BLUE).map {
        Paint().apply { style = Paint.Style.STROKE; strokeWidth = 6f; color = it; isAntiAlias = true }
    }
    private val pointPaint = Paint().apply { color = Color.CYAN; style = Paint.Style.FILL; isAntiAlias = true }
    private val labelPaint = Paint().apply {
        color = Color.WHITE; textSize = 40f; isAntiAlias = true; setShadowLayer(4f, 0f, 0f, Color.BLACK)
    }
    private val statusPaint = Paint().apply {
        color = Color.WHITE; textSize = 34f; isAntiAlias = true; typeface = android.graphics.Typeface.MONOSPACE
        setShadowLayer(4f, 0f, 0f, Color.BLACK)
    }
    private val statusBg = Paint().apply { color = Color.argb(140, 0, 0, 0) }

    /** Show a new frame and its results (call on the UI thread). */
    fun show(bitmap: Bitmap, results: List<FaceResult>, lines: List<String>) {
        frame = bitmap
        faces = results
        status = lines
        invalidate()
    }

    override fun onDraw(canvas: Canvas) {
        val t0 = System.nanoTime()
        super.onDraw(canvas)
        val bmp = frame ?: return
        // centre-crop fill: one scale for both axes, so angles on screen are not distorted
        val s = max(width / bmp.width.toFloat(), height / bmp.height.toFloat())
        toView.reset()
        toView.postScale(s, s)
        toView.postTranslate((width - bmp.width * s) / 2f, (height - bmp.height * s) / 2f)
        canvas.drawBitmap(bmp, toView, null)

        for (f in faces) {
            val r = RectF(f.box[0], f.box[1], f.box[2], f.box[3])
            toView.mapRect(r)
            canvas.drawRect(r, boxPaint)
            for (k in 0 until 5) {
                pts[0] = f.keypoints[2 * k]; pts[1] = f.keypoints[2 * k + 1]
                toView.mapPoints(pts, 0, pts, 0, 1)
                canvas.drawCircle(pts[0], pts[1], 6f, pointPaint)
            }
            for (a in 0 until 3) {
                pts[0] = f.axes[0].toFloat(); pts[1] = f.axes[1].toFloat()
                pts[2] = f.axes[2 + 2 * a].toFloat(); pts[3] = f.axes[3 + 2 * a].toFloat()
                toView.mapPoints(pts, 0, pts, 0, 2)
                canvas.drawLine(pts[0], pts[1], pts[2], pts[3], axisPaints[a])
            }
            canvas.drawText(
                "#%d yaw %.0f pitch %.0f roll %.0f".format(f.trackId, f.yaw, f.pitch, f.roll),
                r.left, r.top - 12f, labelPaint,
            )
        }

        if (status.isNotEmpty()) {
            val lh = statusPaint.textSize * 1.2f
            canvas.drawRect(0f, 0f, width.toFloat(), 24f + lh * status.size, statusBg)
            status.forEachIndexed { i, line -> canvas.drawText(line, 16f, 16f + lh * (i + 1) - 8f, statusPaint) }
        }
        lastDrawMs = (System.nanoTime() - t0) / 1e6
    }
}
