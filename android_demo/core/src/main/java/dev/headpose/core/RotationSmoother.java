package dev.headpose.core;

/**
 * One-Euro filter on a rotation, as {@code headpose.runtime.smoothing.RotationSmoother}: the first
 * two columns of R (6 numbers) are filtered, then Gram-Schmidt-ed back into a rotation with
 * {@link Rotation#fromSixD(double[], int)}. Euler angles are read off the smoothed matrix.
 */
public final class RotationSmoother {
    private final OneEuroFilter filter;

    public RotationSmoother(double minCutoff, double beta, double dCutoff) {
        filter = new OneEuroFilter(minCutoff, beta, dCutoff);
    }

    public RotationSmoother() {
        filter = new OneEuroFilter();
    }

    public void reset() {
        filter.reset();
    }

    /**
     * Smooth one rotation.
     *
     * @param r row-major 3x3 rotation
     * @param t time in seconds
     * @return row-major 3x3 proper rotation
     */
    public double[] smooth(double[] r, double t) {
        double[] v = {r[0], r[3], r[6], r[1], r[4], r[7]};
        return Rotation.fromSixD(filter.filter(v, t), 0);
    }
}
