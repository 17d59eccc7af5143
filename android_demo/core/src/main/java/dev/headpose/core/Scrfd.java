package dev.headpose.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * SCRFD decoding exactly as {@code headpose.runtime.scrfd.decode_scrfd}: anchor centres per stride
 * (row-major, {@code numAnchors} consecutive copies per cell), distances times the stride,
 * score threshold, division by the letterbox scale, greedy NMS with the {@code +1} area convention.
 * Arithmetic is float32 in the same order as the NumPy code.
 */
public final class Scrfd {
    private final int inputH;
    private final int inputW;
    private final int[] strides;
    private final int numAnchors;
    private final float scoreThreshold;
    private final float nmsThreshold;
    private final Map<Integer, float[]> centres = new HashMap<>();

    /**
     * @param inputH, inputW detector input size in pixels
     * @param strides        feature strides (manifest decode.strides)
     * @param numAnchors     anchors per cell (decode.anchors_per_cell)
     * @param scoreThreshold keep scores {@code >=} this (decode.score_threshold)
     * @param nmsThreshold   drop boxes whose IoU with a kept one is above this (decode.nms_threshold)
     */
    public Scrfd(int inputH, int inputW, int[] strides, int numAnchors, double scoreThreshold, double nmsThreshold) {
        this.inputH = inputH;
        this.inputW = inputW;
        this.strides = strides.clone();
        this.numAnchors = numAnchors;
        this.scoreThreshold = (float) scoreThreshold;
        this.nmsThreshold = (float) nmsThreshold;
    }

    /** A decoder configured from a detector manifest. */
    public static Scrfd fromManifest(Manifest m) {
        m.expectTask("face_detection");
        return new Scrfd(m.input.height(), m.input.width(), m.scrfdStrides(), m.scrfdAnchorsPerCell(),
                m.scrfdScoreThreshold(), m.scrfdNmsThreshold());
    }

    public int[] strides() {
        return strides.clone();
    }

    /** Number of anchors (rows of score/bbox/kps) at {@code stride}. */
    public int anchorCount(int stride) {
        return (inputH / stride) * (inputW / stride) * numAnchors;
    }

    /** Anchor centres of one stride as x0, y0, x1, y1 ... (cached). */
    public synchronized float[] anchorCentres(int stride) {
        float[] c = centres.get(stride);
        if (c == null) {
            int gh = inputH / stride;
            int gw = inputW / stride;
            c = new float[gh * gw * numAnchors * 2];
            int k = 0;
            for (int y = 0; y < gh; y++) {
                for (int x = 0; x < gw; x++) {
                    for (int a = 0; a < numAnchors; a++) {
                        c[k++] = (float) (x * stride);
                        c[k++] = (float) (y * stride);
                    }
                }
            }
            centres.put(stride, c);
        }
        return c;
    }

    /**
     * Turn raw outputs into faces.
     *
     * @param scores   per stride (same order as {@link #strides()}): N scores
     * @param bboxes   per stride: N x 4 distances (stride units), row-major
     * @param kps      per stride: N x 10 keypoint offsets, or null when the model has no keypoints
     * @param scale    letterbox scale (resized / original); coordinates are divided by it
     * @param maxFaces keep at most this many (highest score first); 0 keeps all
     * @return faces in frame pixels, highest score first
     */
    public List<Face> decode(float[][] scores, float[][] bboxes, float[][] kps, double scale, int maxFaces) {
        float fscale = (float) scale;
        List<float[]> boxes = new ArrayList<>();
        List<float[]> points = new ArrayList<>();
        List<Float> kept = new ArrayList<>();
        for (int si = 0; si < strides.length; si++) {
            int s = strides[si];
            float[] sc = scores[si];
            float[] c = anchorCentres(s);
            if (sc.length * 2 != c.length || bboxes[si].length != sc.length * 4
                    || (kps != null && kps[si] != null && kps[si].length != sc.length * 10)) {
                throw new HeadposeException.InputException("SCRFD stride " + s + ": " + sc.length + " scores, "
                        + bboxes[si].length / 4 + " boxes for " + c.length / 2 + " anchors of a " + inputW + "x"
                        + inputH + " input; the manifest's input size does not match the model");
            }
            float fs = (float) s;
            for (int n = 0; n < sc.length; n++) {
                if (!(sc[n] >= scoreThreshold)) {
                    continue;
                }
                float cx = c[2 * n];
                float cy = c[2 * n + 1];
                float[] d = bboxes[si];
                float[] b = {
                    (cx - d[4 * n] * fs) / fscale, (cy - d[4 * n + 1] * fs) / fscale,
                    (cx + d[4 * n + 2] * fs) / fscale, (cy + d[4 * n + 3] * fs) / fscale};
                float[] p = new float[10];
                if (kps != null && kps[si] != null) {
                    float[] k = kps[si];
                    for (int j = 0; j < 5; j++) {
                        p[2 * j] = (k[10 * n + 2 * j] * fs + cx) / fscale;
                        p[2 * j + 1] = (k[10 * n + 2 * j + 1] * fs + cy) / fscale;
                    }
                }
                boxes.add(b);
                points.add(p);
                kept.add(sc[n]);
            }
        }
        int[] keep = nms(boxes, kept, nmsThreshold);
        int n = maxFaces > 0 ? Math.min(maxFaces, keep.length) : keep.length;
        List<Face> out = new ArrayList<>(n);
        for (int k = 0; k < n; k++) {
            float[] b = boxes.get(keep[k]);
            out.add(new Face(b[0], b[1], b[2], b[3], kept.get(keep[k]), points.get(keep[k])));
        }
        return out;
    }

    /**
     * Greedy NMS (insightface: areas with +1), float32 like the NumPy code.
     *
     * @return indices of kept boxes, highest score first (ties keep input order)
     */
    public static int[] nms(List<float[]> boxes, List<Float> scores, float threshold) {
        int n = boxes.size();
        Integer[] order = new Integer[n];
        for (int k = 0; k < n; k++) {
            order[k] = k;
        }
        // stable sort by descending score (np.argsort(-scores, kind="stable"))
        Arrays.sort(order, (a, b) -> Float.compare(-scores.get(a), -scores.get(b)));
        float[] area = new float[n];
        for (int k = 0; k < n; k++) {
            float[] b = boxes.get(k);
            area[k] = (b[2] - b[0] + 1f) * (b[3] - b[1] + 1f);
        }
        boolean[] gone = new boolean[n];
        List<Integer> keep = new ArrayList<>();
        for (int oi = 0; oi < n; oi++) {
            int i = order[oi];
            if (gone[i]) {
                continue;
            }
            keep.add(i);
            float[] bi = boxes.get(i);
            for (int oj = oi + 1; oj < n; oj++) {
                int j = order[oj];
                if (gone[j]) {
                    continue;
                }
                float[] bj = boxes.get(j);
                float w = Math.max(0f, Math.min(bi[2], bj[2]) - Math.max(bi[0], bj[0]) + 1f);
                float h = Math.max(0f, Math.min(bi[3], bj[3]) - Math.max(bi[1], bj[1]) + 1f);
                float inter = w * h;
                float iou = inter / (area[i] + area[j] - inter);
                if (!(iou <= threshold)) {
                    gone[j] = true;
                }
            }
        }
        int[] out = new int[keep.size()];
        for (int k = 0; k < out.length; k++) {
            out[k] = keep.get(k);
        }
        return out;
    }

    /** IoU of two x1, y1, x2, y2 boxes with plain areas (no +1), as Python's {@code box_iou}. */
    public static double iou(float[] a, float[] b) {
        double iw = Math.max(0.0, Math.min(a[2], b[2]) - (double) Math.max(a[0], b[0]));
        double ih = Math.max(0.0, Math.min(a[3], b[3]) - (double) Math.max(a[1], b[1]));
        double inter = iw * ih;
        double areaA = ((double) a[2] - a[0]) * ((double) a[3] - a[1]);
        double areaB = ((double) b[2] - b[0]) * ((double) b[3] - b[1]);
        return inter / Math.max(areaA + areaB - inter, 1e-9);
    }
}
