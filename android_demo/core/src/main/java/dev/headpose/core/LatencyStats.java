package dev.headpose.core;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Latency summary statistics as {@code headpose.benchmarks.stats.summarize}: {@code n}, {@code mean},
 * {@code std} (population), {@code min}, {@code p50}, {@code p90}, {@code p99}, {@code max} in
 * milliseconds, percentiles by linear interpolation between order statistics (NumPy's default),
 * rounded to 3 decimals.
 */
public final class LatencyStats {
    private LatencyStats() {
    }

    /** The {@code q}-th percentile (0..100) of sorted values, NumPy {@code linear} method. */
    public static double percentile(double[] sorted, double q) {
        double pos = q / 100.0 * (sorted.length - 1);
        int lo = (int) Math.floor(pos);
        int hi = Math.min(lo + 1, sorted.length - 1);
        double frac = pos - lo;
        return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
    }

    static double round3(double v) {
        return Math.round(v * 1000.0) / 1000.0;
    }

    /**
     * Summary of latency samples.
     *
     * @param samplesMs at least one finite value, milliseconds
     * @return an ordered map with the keys of the bench schema's {@code stats} object
     */
    public static Map<String, Object> summarize(double[] samplesMs) {
        if (samplesMs.length == 0) {
            throw new HeadposeException.InputException("no latency samples to summarise: expected at least one measurement");
        }
        double[] a = samplesMs.clone();
        double sum = 0;
        for (double v : a) {
            if (Double.isNaN(v) || Double.isInfinite(v)) {
                throw new HeadposeException.InputException("latency samples must be finite, found " + v);
            }
            sum += v;
        }
        double mean = sum / a.length;
        double ss = 0;
        for (double v : a) {
            ss += (v - mean) * (v - mean);
        }
        Arrays.sort(a);
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("n", a.length);
        m.put("mean", round3(mean));
        m.put("std", round3(Math.sqrt(ss / a.length)));
        m.put("min", round3(a[0]));
        m.put("p50", round3(percentile(a, 50)));
        m.put("p90", round3(percentile(a, 90)));
        m.put("p99", round3(percentile(a, 99)));
        m.put("max", round3(a[a.length - 1]));
        return m;
    }
}
