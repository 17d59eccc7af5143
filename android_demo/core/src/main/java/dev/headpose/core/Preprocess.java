package dev.headpose.core;

/**
 * Detector letterbox and pose face crops, pixel for pixel as {@code headpose.runtime.preprocess}.
 *
 * <p>The bilinear resize follows the NumPy reference path of {@code resize_bilinear} (OpenCV
 * {@code INTER_LINEAR} geometry: half-pixel centres, edge clamp, no antialiasing), with the same
 * float32 arithmetic order, so its output agrees with the Python runtime to float32 rounding.
 * Results are written normalised, {@code (pixel - mean) / std}, straight into the model's input
 * layout ({@code NHWC} or {@code NCHW}) and colour order.
 */
public final class Preprocess {
    private Preprocess() {
    }

    /** Source index pairs and weights of one axis ({@code _axis_taps} in Python). */
    static final class Taps {
        final int[] i0;
        final int[] i1;
        final float[] w;

        Taps(int src, int dst) {
            i0 = new int[dst];
            i1 = new int[dst];
            w = new float[dst];
            double scale = (double) src / dst;
            for (int k = 0; k < dst; k++) {
                double f = (k + 0.5) * scale - 0.5;
                int a = (int) Math.floor(f);
                float wk = (float) (f - a);
                if (a < 0) {
                    wk = 0f;
                    a = 0;
                }
                if (a >= src - 1) {
                    wk = 0f;
                    a = src - 1;
                }
                i0[k] = a;
                i1[k] = Math.min(a + 1, src - 1);
                w[k] = wk;
            }
        }
    }

    /**
     * Resize the frame region {@code [x0, x0 + srcW) x [y0, y0 + srcH)} to {@code dstW x dstH} and
     * write it normalised into {@code out}, whose image is {@code outW x outH} (the resized region
     * fills its top-left corner).
     */
    private static void resizeInto(Frame f, int x0, int y0, int srcW, int srcH, int dstW, int dstH,
                                   String color, float[] mean, float[] std, boolean nchw,
                                   float[] out, int offset, int outW, int outH) {
        Taps ty = new Taps(srcH, dstH);
        Taps tx = new Taps(srcW, dstW);
        byte[] d = f.data;
        int ps = f.pixelStride;
        int plane = outW * outH;
        for (int c = 0; c < 3; c++) {
            int co = f.channelOffset(color, c);
            float m = mean[c];
            float s = std[c];
            for (int oy = 0; oy < dstH; oy++) {
                int rowT = (y0 + ty.i0[oy]) * f.rowStride + co;
                int rowB = (y0 + ty.i1[oy]) * f.rowStride + co;
                float wy = ty.w[oy];
                for (int ox = 0; ox < dstW; ox++) {
                    int xa = (x0 + tx.i0[ox]) * ps;
                    int xb = (x0 + tx.i1[ox]) * ps;
                    float ta = d[rowT + xa] & 0xff;
                    float ba = d[rowB + xa] & 0xff;
                    float tb = d[rowT + xb] & 0xff;
                    float bb = d[rowB + xb] & 0xff;
                    float left = ta + (ba - ta) * wy;
                    float right = tb + (bb - tb) * wy;
                    float v = left + (right - left) * tx.w[ox];
                    int idx = nchw ? offset + c * plane + oy * outW + ox : offset + (oy * outW + ox) * 3 + c;
                    out[idx] = (v - m) / s;
                }
            }
        }
    }

    /**
     * The letterboxed size of a {@code w x h} frame inside an {@code iw x ih} canvas, as Python's
     * {@code letterbox}: {@code {newW, newH}}.
     */
    public static int[] letterboxSize(int w, int h, int iw, int ih) {
        int newW;
        int newH;
        double ratio = (double) h / w;
        if (ratio > (double) ih / iw) {
            newH = ih;
            newW = (int) (newH / ratio);
        } else {
            newW = iw;
            newH = (int) (newW * ratio);
        }
        return new int[] {Math.max(newW, 1), Math.max(newH, 1)};
    }

    /**
     * The SCRFD letterbox: fit the frame into the detector input keeping its aspect ratio,
     * top-left aligned on a zero (black) canvas, then normalise the whole canvas.
     *
     * @param f      the frame
     * @param input  the detector's input tensor (size, layout, colour, mean, std from the manifest)
     * @param out    destination of at least {@code offset + H * W * 3} floats
     * @param offset where the image starts in {@code out}
     * @return the scale {@code resized / original}: divide detector coordinates by it
     */
    public static double letterbox(Frame f, TensorSpec input, float[] out, int offset) {
        int ih = input.height();
        int iw = input.width();
        int[] nw = letterboxSize(f.width, f.height, iw, ih);
        boolean nchw = "NCHW".equals(input.layout);
        int plane = ih * iw;
        for (int c = 0; c < 3; c++) {
            float pad = (0f - input.mean[c]) / input.std[c];
            for (int y = 0; y < ih; y++) {
                for (int x = 0; x < iw; x++) {
                    if (y < nw[1] && x < nw[0]) {
                        continue;
                    }
                    out[nchw ? offset + c * plane + y * iw + x : offset + (y * iw + x) * 3 + c] = pad;
                }
            }
        }
        resizeInto(f, 0, 0, f.width, f.height, nw[0], nw[1], input.color, input.mean, input.std, nchw,
                out, offset, iw, ih);
        return (double) nw[1] / f.height;
    }

    /**
     * The yakhyo/head-pose-estimation crop box ({@code expand_box}): x grows by
     * {@code int(margin * height)} and y by {@code int(margin * width)} on each side of the
     * integer (truncated) box; the top-left is clipped at 0.
     *
     * @param box x1, y1, x2, y2 (at least 4 values) in frame pixels
     * @return {x1, y1, x2, y2}; the bottom-right is not yet clipped to the frame
     */
    public static int[] expandBox(float[] box, double margin) {
        int x1 = (int) (double) box[0];
        int y1 = (int) (double) box[1];
        int x2 = (int) (double) box[2];
        int y2 = (int) (double) box[3];
        int w = x2 - x1;
        int h = y2 - y1;
        int mx = (int) (margin * h);
        int my = (int) (margin * w);
        return new int[] {Math.max(0, x1 - mx), Math.max(0, y1 - my), x2 + mx, y2 + my};
    }

    /**
     * Cut one face out of the frame ({@code crop_faces} for one box): expand the box, clip it to
     * the frame, resize to the model input (no aspect kept), normalise.
     *
     * @param box    x1, y1, x2, y2 in frame pixels
     * @param margin crop margin from the manifest ({@link Manifest#cropMargin()})
     * @param input  the pose model's input tensor (size, layout, colour, mean, std)
     * @param out    destination of at least {@code offset + H * W * 3} floats
     * @return the clipped crop box {x1, y1, x2, y2}, or null when the box lies outside the frame
     *         (nothing is written then)
     */
    public static int[] cropFace(Frame f, float[] box, double margin, TensorSpec input, float[] out, int offset) {
        int[] b = expandBox(box, margin);
        b[2] = Math.min(b[2], f.width);
        b[3] = Math.min(b[3], f.height);
        if (b[2] - b[0] < 1 || b[3] - b[1] < 1) {
            return null;
        }
        int h = input.height();
        int w = input.width();
        resizeInto(f, b[0], b[1], b[2] - b[0], b[3] - b[1], w, h, input.color, input.mean, input.std,
                "NCHW".equals(input.layout), out, offset, w, h);
        return b;
    }
}
