package dev.headpose.core;

/**
 * 6D rotation representation, rotation matrices and Euler angles, as {@code headpose.runtime.rotation}.
 *
 * <p>Conventions (6DRepNet, yakhyo/head-pose-estimation): the 6-vector's two 3-vectors
 * {@code a1 = v[0..2]}, {@code a2 = v[3..5]} are Gram-Schmidt-ed into the <em>columns</em> of R:
 * {@code x = a1/|a1|}, {@code z = (x × a2)/|x × a2|}, {@code y = z × x}. Euler angles (degrees):
 * {@code pitch = atan2(R21, R22)}, {@code yaw = atan2(-R20, sqrt(R00² + R10²))},
 * {@code roll = atan2(R10, R00)}, the inverse of {@code R = Rz(roll)·Ry(yaw)·Rx(pitch)}.
 * Matrices are row-major {@code double[9]}; computation is in double precision.
 */
public final class Rotation {
    private static final double EPS = 1e-8;

    private Rotation() {
    }

    private static void normalise(double[] v) {
        double n = Math.max(Math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]), EPS);
        v[0] /= n;
        v[1] /= n;
        v[2] /= n;
    }

    private static double[] cross(double[] a, double[] b) {
        return new double[] {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
    }

    /**
     * Rotation matrix from the network's raw 6-vector (any scale).
     *
     * @param v6     at least {@code offset + 6} values
     * @param offset index of the first of the six
     * @return row-major 3x3 proper rotation (orthonormal, det +1)
     */
    public static double[] fromSixD(double[] v6, int offset) {
        double[] x = {v6[offset], v6[offset + 1], v6[offset + 2]};
        double[] a2 = {v6[offset + 3], v6[offset + 4], v6[offset + 5]};
        normalise(x);
        double[] z = cross(x, a2);
        normalise(z);
        double[] y = cross(z, x);
        return new double[] {x[0], y[0], z[0], x[1], y[1], z[1], x[2], y[2], z[2]};
    }

    /** {@link #fromSixD(double[], int)} for float32 network output. */
    public static double[] fromSixD(float[] v6, int offset) {
        double[] d = new double[6];
        for (int k = 0; k < 6; k++) {
            d[k] = v6[offset + k];
        }
        return fromSixD(d, 0);
    }

    /**
     * (pitch, yaw, roll) in degrees; pitch and roll in (-180, 180], yaw in [-90, 90]. At gimbal lock
     * ({@code sqrt(R00² + R10²) < 1e-6}) roll is 0 and pitch absorbs it, as upstream.
     *
     * @param r row-major 3x3 rotation
     * @return {pitch, yaw, roll}
     */
    public static double[] toEuler(double[] r) {
        double sy = Math.sqrt(r[0] * r[0] + r[3] * r[3]);
        boolean singular = sy < 1e-6;
        double pitch = singular ? Math.atan2(-r[5], r[4]) : Math.atan2(r[7], r[8]);
        double yaw = Math.atan2(-r[6], sy);
        double roll = singular ? 0.0 : Math.atan2(r[3], r[0]);
        return new double[] {Math.toDegrees(pitch), Math.toDegrees(yaw), Math.toDegrees(roll)};
    }

    /** {pitch, yaw, roll} in degrees straight from the 6-vector. */
    public static double[] eulerFromSixD(float[] v6, int offset) {
        return toEuler(fromSixD(v6, offset));
    }

    /** {@code R = Rz(roll)·Ry(yaw)·Rx(pitch)} from degrees, row-major. */
    public static double[] fromEuler(double pitchDeg, double yawDeg, double rollDeg) {
        double p = Math.toRadians(pitchDeg);
        double y = Math.toRadians(yawDeg);
        double r = Math.toRadians(rollDeg);
        double cp = Math.cos(p), sp = Math.sin(p), cy = Math.cos(y), sy = Math.sin(y), cr = Math.cos(r), sr = Math.sin(r);
        return new double[] {
            cr * cy, cr * sy * sp - sr * cp, cr * sy * cp + sr * sp,
            sr * cy, sr * sy * sp + cr * cp, sr * sy * cp - cr * sp,
            -sy, cy * sp, cy * cp};
    }

    /** Rotation angle of {@code aᵀ·b} in degrees, 0..180 (the geodesic distance). */
    public static double geodesicDeg(double[] a, double[] b) {
        double tr = 0;
        for (int k = 0; k < 9; k++) {
            tr += a[k] * b[k];
        }
        return Math.toDegrees(Math.acos(Math.max(-1.0, Math.min(1.0, (tr - 1.0) / 2.0))));
    }
}
