package dev.headpose.core;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Per-stage and end-to-end latency samples of a live run, turned into one {@code pipelines} entry of
 * the {@code headpose-bench} v1 result schema (defined and versioned in {@code benchmarks/schema.py}).
 *
 * <p>Stage names follow the benchmark harness: {@code capture}, {@code detector_preprocess},
 * {@code detector}, {@code decode}, {@code crop}, {@code pose}, {@code smoothing}, {@code draw}.
 * Not thread-safe: record from the analysis thread only.
 */
public final class LatencyRecorder {
    public static final String[] STAGES = {
        "capture", "detector_preprocess", "detector", "decode", "crop", "pose", "smoothing", "draw"};

    private final Map<String, List<Double>> stages = new LinkedHashMap<>();
    private final List<Double> endToEnd = new ArrayList<>();
    private final List<Integer> faces = new ArrayList<>();
    private long firstNanos = -1;
    private long lastNanos = -1;
    private double firstFrameMs = Double.NaN;

    public LatencyRecorder() {
        for (String s : STAGES) {
            stages.put(s, new ArrayList<>());
        }
    }

    /** Forget every sample (e.g. after a settings change). */
    public void clear() {
        for (List<Double> l : stages.values()) {
            l.clear();
        }
        endToEnd.clear();
        faces.clear();
        firstNanos = -1;
        lastNanos = -1;
        firstFrameMs = Double.NaN;
    }

    /** Add one sample of {@code stage} in milliseconds. */
    public void stage(String stage, double ms) {
        List<Double> l = stages.get(stage);
        if (l == null) {
            throw new HeadposeException.InputException("unknown stage '" + stage + "': expected one of "
                    + String.join(", ", STAGES));
        }
        l.add(ms);
    }

    /**
     * Close one frame.
     *
     * @param endToEndMs the frame's latency from capture to drawn result
     * @param faceCount  faces estimated in the frame
     * @param nowNanos   a monotonic clock ({@code System.nanoTime()}) at the frame's end
     */
    public void frame(double endToEndMs, int faceCount, long nowNanos) {
        if (firstNanos < 0) {
            firstNanos = nowNanos;
            firstFrameMs = endToEndMs;
            return; // the first frame (warm-up, delegate compilation) is reported apart, as first_frame_ms
        }
        endToEnd.add(endToEndMs);
        faces.add(faceCount);
        lastNanos = nowNanos;
    }

    /** Frames measured (the first frame excluded). */
    public int frames() {
        return endToEnd.size();
    }

    /** Frames per second over the measured frames (0 before two frames). */
    public double fps() {
        if (lastNanos <= firstNanos || endToEnd.isEmpty()) {
            return 0.0;
        }
        return endToEnd.size() / ((lastNanos - firstNanos) / 1e9);
    }

    /** Every sample of {@code stage} so far (milliseconds), or of {@code end_to_end}. */
    public double[] samples(String stage) {
        List<Double> l = "end_to_end".equals(stage) ? endToEnd : stages.get(stage);
        if (l == null) {
            throw new HeadposeException.InputException("unknown stage '" + stage + "': expected end_to_end or one of "
                    + String.join(", ", STAGES));
        }
        return arr(l);
    }

    /** Recent mean of a stage over its last {@code n} samples (for the on-screen overlay), NaN if none. */
    public double recentMean(String stage, int n) {
        List<Double> l = "end_to_end".equals(stage) ? endToEnd : stages.get(stage);
        if (l == null || l.isEmpty()) {
            return Double.NaN;
        }
        double s = 0;
        int k = 0;
        for (int i = l.size() - 1; i >= 0 && k < n; i--, k++) {
            s += l.get(i);
        }
        return s / k;
    }

    private static double[] arr(List<Double> l) {
        double[] a = new double[l.size()];
        for (int i = 0; i < a.length; i++) {
            a[i] = l.get(i);
        }
        return a;
    }

    /**
     * The {@code pipelines} entry of this run.
     *
     * @param backend      {@code litert}
     * @param accelerator  {@code xnnpack}, {@code cpu} (no XNNPACK) or {@code gpu}; recorded in the key
     * @param detectEvery  detection period in frames
     * @param loadMs       time to load both interpreters
     * @param keepSamples  also store the raw end-to-end samples
     */
    public Map<String, Object> pipeline(String backend, Manifest detector, Manifest pose, int threads,
                                        String accelerator, int detectEvery, boolean smooth, double loadMs,
                                        boolean keepSamples) {
        if (endToEnd.isEmpty()) {
            throw new HeadposeException.InputException("no frames were measured: run the camera for a few seconds "
                    + "before saving a latency report");
        }
        String acc = "xnnpack".equals(accelerator) ? "xnn" : "gpu".equals(accelerator) ? "gpu" : "noxnn";
        Map<String, Object> p = new LinkedHashMap<>();
        p.put("key", backend + "|" + pose.model + "|" + pose.precision + "|t" + threads + "|de" + detectEvery + "|" + acc);
        p.put("backend", backend);
        p.put("style", "headpose");
        p.put("detector", detector.id);
        p.put("detector_sha256", detector.fileSha256);
        p.put("pose", pose.id);
        p.put("pose_sha256", pose.fileSha256);
        p.put("model", pose.model);
        p.put("precision", pose.precision);
        p.put("detector_precision", detector.precision);
        p.put("threads", threads);
        p.put("xnnpack", "xnnpack".equals(accelerator));
        p.put("accelerator", accelerator);
        p.put("detect_every", detectEvery);
        p.put("smooth", smooth);
        p.put("frames", endToEnd.size());
        int total = 0;
        int max = 0;
        for (int f : faces) {
            total += f;
            max = Math.max(max, f);
        }
        p.put("faces_total", total);
        Map<String, Object> fpf = new LinkedHashMap<>();
        fpf.put("mean", LatencyStats.round3((double) total / faces.size()));
        fpf.put("max", max);
        p.put("faces_per_frame", fpf);
        p.put("load_ms", LatencyStats.round3(loadMs));
        p.put("first_frame_ms", LatencyStats.round3(firstFrameMs));
        Map<String, Object> st = new LinkedHashMap<>();
        for (Map.Entry<String, List<Double>> e : stages.entrySet()) {
            if (!e.getValue().isEmpty()) {
                st.put(e.getKey(), LatencyStats.summarize(arr(e.getValue())));
            }
        }
        p.put("stages", st);
        Map<String, Object> e2e = LatencyStats.summarize(arr(endToEnd));
        p.put("end_to_end", e2e);
        p.put("wall_s", LatencyStats.round3((lastNanos - firstNanos) / 1e9));
        double rate = LatencyStats.round3(fps());
        p.put("fps", rate);
        p.put("verdict", BenchReport.verdict(rate, (Double) e2e.get("p99")));
        if (keepSamples) {
            List<Object> s = new ArrayList<>();
            for (double v : endToEnd) {
                s.add(LatencyStats.round3(v));
            }
            p.put("samples_ms", s);
        }
        return p;
    }
}
