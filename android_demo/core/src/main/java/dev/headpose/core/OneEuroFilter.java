package dev.headpose.core;

/**
 * The One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) over a vector of D values, exactly as
 * {@code headpose.runtime.smoothing.OneEuroFilter}.
 *
 * <pre>
 * first sample:  x̂0 = x0, dx̂0 = 0
 * Δt   = t_i - t_{i-1}            (if Δt &lt;= 0, 1/30 s is used instead)
 * α(f) = 1 / (1 + 1 / (2π·f·Δt))
 * dx   = (x_i - x̂_{i-1}) / Δt
 * dx̂_i = dx̂_{i-1} + α(dCutoff)·(dx - dx̂_{i-1})
 * f_i  = minCutoff + beta·‖dx̂_i‖₂   (Euclidean norm over the D values)
 * x̂_i  = x̂_{i-1} + α(f_i)·(x_i - x̂_{i-1})
 * </pre>
 * Computation is in double precision.
 */
public final class OneEuroFilter {
    public static final double DEFAULT_MIN_CUTOFF = 1.0;
    public static final double DEFAULT_BETA = 2.0;
    public static final double DEFAULT_D_CUTOFF = 1.0;
    public static final double DEFAULT_DT = 1.0 / 30.0;

    private final double minCutoff;
    private final double beta;
    private final double dCutoff;
    private double[] xPrev;
    private double[] dxPrev;
    private double tPrev;

    /**
     * @param minCutoff cutoff (Hz) at zero speed, &gt; 0
     * @param beta      cutoff increase per unit of speed, &gt;= 0
     * @param dCutoff   cutoff (Hz) of the derivative's low-pass, &gt; 0
     */
    public OneEuroFilter(double minCutoff, double beta, double dCutoff) {
        if (!(minCutoff > 0 && dCutoff > 0 && beta >= 0)) {
            throw new HeadposeException.InputException("One-Euro parameters must be min_cutoff > 0, d_cutoff > 0, "
                    + "beta >= 0; found min_cutoff=" + minCutoff + ", beta=" + beta + ", d_cutoff=" + dCutoff);
        }
        this.minCutoff = minCutoff;
        this.beta = beta;
        this.dCutoff = dCutoff;
    }

    /** The filter with the runtime's default parameters. */
    public OneEuroFilter() {
        this(DEFAULT_MIN_CUTOFF, DEFAULT_BETA, DEFAULT_D_CUTOFF);
    }

    /** Forget the history; the next sample passes through unchanged. */
    public void reset() {
        xPrev = null;
        dxPrev = null;
    }

    /** Smoothing factor {@code 1 / (1 + 1 / (2π·cutoff·dt))}. */
    public static double alpha(double cutoff, double dt) {
        return 1.0 / (1.0 + 1.0 / (2.0 * Math.PI * cutoff * dt));
    }

    /**
     * Filter one sample.
     *
     * @param x the sample (D values; a change of D restarts the filter)
     * @param t time in seconds (any origin)
     * @return a new array: the filtered sample
     */
    public double[] filter(double[] x, double t) {
        if (xPrev == null || xPrev.length != x.length) {
            xPrev = x.clone();
            dxPrev = new double[x.length];
            tPrev = t;
            return x.clone();
        }
        double dt = t - tPrev;
        if (!(dt > 0)) {
            dt = DEFAULT_DT;
        }
        double ad = alpha(dCutoff, dt);
        double[] dxHat = new double[x.length];
        double norm2 = 0;
        for (int k = 0; k < x.length; k++) {
            double dx = (x[k] - xPrev[k]) / dt;
            dxHat[k] = dxPrev[k] + ad * (dx - dxPrev[k]);
            norm2 += dxHat[k] * dxHat[k];
        }
        double a = alpha(minCutoff + beta * Math.sqrt(norm2), dt);
        double[] xHat = new double[x.length];
        for (int k = 0; k < x.length; k++) {
            xHat[k] = xPrev[k] + a * (x[k] - xPrev[k]);
        }
        xPrev = xHat;
        dxPrev = dxHat;
        tPrev = t;
        return xHat.clone();
    }
}
