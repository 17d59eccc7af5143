package dev.headpose.core;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A {@code headpose-bench} schema v1 result file, as the benchmark harness writes it (the schema is
 * defined and versioned in {@code benchmarks/schema.py}); {@code headpose bench-report} merges such
 * files from every device.
 */
public final class BenchReport {
    public static final String SCHEMA_NAME = "headpose-bench";
    public static final int SCHEMA_VERSION = 1;
    /** The budgets of the harness: 30 FPS or more, p99 end-to-end under 100 ms. */
    public static final double FPS_MIN = 30.0;
    public static final double P99_MS_MAX = 100.0;

    private BenchReport() {
    }

    /** PASS/FAIL per budget and overall, as {@code benchmarks.stats.verdict}. */
    public static Map<String, Object> verdict(double fps, double p99Ms) {
        Map<String, Object> v = new LinkedHashMap<>();
        String f = fps >= FPS_MIN ? "PASS" : "FAIL";
        String p = p99Ms < P99_MS_MAX ? "PASS" : "FAIL";
        v.put("fps", f);
        v.put("p99", p);
        v.put("overall", f.equals("PASS") && p.equals("PASS") ? "PASS" : "FAIL");
        return v;
    }

    /** The {@code artifacts} entry of one manifest. */
    public static Map<String, Object> artifact(Manifest m, String weights) {
        Map<String, Object> a = new LinkedHashMap<>();
        a.put("id", m.id);
        a.put("model", m.model);
        a.put("task", m.task);
        a.put("format", m.format);
        a.put("precision", m.precision);
        a.put("file_sha256", m.fileSha256);
        a.put("file_bytes", m.fileBytes);
        a.put("weights", weights);
        Object source = m.raw.get("source");
        if (source instanceof Map && ((Map<?, ?>) source).get("sha256") instanceof String) {
            a.put("source_sha256", ((Map<?, ?>) source).get("sha256"));
        }
        return a;
    }

    /**
     * One {@code model_latency} entry: a model alone in the interpreter.
     *
     * @param accelerator {@code xnnpack}, {@code cpu} or {@code gpu}
     */
    public static Map<String, Object> modelLatency(Manifest m, String runtime, int threads, String accelerator,
                                                   int batch, double loadMs, double firstRunMs, double[] samplesMs) {
        String acc = "xnnpack".equals(accelerator) ? "xnn" : "gpu".equals(accelerator) ? "gpu" : "noxnn";
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("key", runtime + "|" + m.model + "|" + m.precision + "|t" + threads + "|" + acc);
        e.put("artifact", m.id);
        e.put("model", m.model);
        e.put("task", m.task);
        e.put("format", m.format);
        e.put("precision", m.precision);
        e.put("runtime", runtime);
        e.put("threads", threads);
        e.put("xnnpack", "xnnpack".equals(accelerator));
        e.put("accelerator", accelerator);
        e.put("batch", batch);
        List<Object> shape = new ArrayList<>();
        for (int d : m.input.shape) {
            shape.add(d);
        }
        shape.set(0, batch);
        e.put("input_shape", shape);
        e.put("load_ms", LatencyStats.round3(loadMs));
        e.put("first_run_ms", LatencyStats.round3(firstRunMs));
        e.put("stats", LatencyStats.summarize(samplesMs));
        return e;
    }

    /**
     * The whole result object.
     *
     * @param device     fingerprint: at least {@code name}, {@code os}, {@code arch} (non-empty strings)
     * @param createdUtc ISO-8601 UTC time, e.g. {@code 2026-11-25T13:15:00Z}
     */
    public static Map<String, Object> result(Map<String, Object> device, String createdUtc, String toolName,
                                             String toolVersion, List<Map<String, Object>> artifacts,
                                             List<Map<String, Object>> modelLatency,
                                             List<Map<String, Object>> pipelines, List<String> notes) {
        for (String k : new String[] {"name", "os", "arch"}) {
            Object v = device.get(k);
            if (!(v instanceof String) || ((String) v).isEmpty()) {
                throw new HeadposeException.InputException("device." + k + ": expected a non-empty string, found " + v);
            }
        }
        if (modelLatency.isEmpty() && pipelines.isEmpty()) {
            throw new HeadposeException.InputException("a result must hold at least one model_latency or pipelines entry");
        }
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("schema", SCHEMA_NAME);
        r.put("schema_version", SCHEMA_VERSION);
        String stamp = createdUtc.replace("-", "").replace(":", "");
        r.put("run_id", device.get("name").toString().replace(' ', '-') + "-" + stamp);
        r.put("created_utc", createdUtc);
        Map<String, Object> tool = new LinkedHashMap<>();
        tool.put("name", toolName);
        tool.put("version", toolVersion);
        r.put("tool", tool);
        r.put("device", device);
        Map<String, Object> budgets = new LinkedHashMap<>();
        budgets.put("fps_min", FPS_MIN);
        budgets.put("p99_ms_max", P99_MS_MAX);
        r.put("budgets", budgets);
        r.put("artifacts", new ArrayList<Object>(artifacts));
        r.put("model_latency", new ArrayList<Object>(modelLatency));
        r.put("pipelines", new ArrayList<Object>(pipelines));
        r.put("notes", new ArrayList<Object>(notes));
        return r;
    }
}
