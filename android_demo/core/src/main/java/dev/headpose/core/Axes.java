package dev.headpose.core;

/**
 * Screen geometry of the head axes, as {@code headpose.runtime.draw.axis_points} (upstream
 * {@code draw_axis}: yaw negated, centre at the middle of the box, length a fraction of its shorter side).
 */
public final class Axes {
    private Axes() {
    }

    /**
     * Centre and the ends of the x (red), y (green) and z (blue) axes.
     *
     * @param yaw, pitch, roll degrees
     * @param box       x1, y1, x2, y2 of the (expanded) face box, pixels
     * @param sizeRatio axis length as a fraction of the box's shorter side (0.5 upstream)
     * @return {cx, cy, xx, xy, yx, yy, zx, zy} integer pixel coordinates (truncated as Python's int())
     */
    public static int[] points(double yaw, double pitch, double roll, float[] box, double sizeRatio) {
        double y = Math.toRadians(-yaw);
        double p = Math.toRadians(pitch);
        double r = Math.toRadians(roll);
        double x0 = box[0], y0 = box[1], x1 = box[2], y1 = box[3];
        int tdx = (int) (x0 + (x1 - x0) * 0.5);
        int tdy = (int) (y0 + (y1 - y0) * 0.5);
        double size = Math.min(x1 - x0, y1 - y0) * sizeRatio;
        double cy = Math.cos(y), sy = Math.sin(y), cp = Math.cos(p), sp = Math.sin(p), cr = Math.cos(r), sr = Math.sin(r);
        return new int[] {
            tdx, tdy,
            (int) (size * (cy * cr) + tdx), (int) (size * (cp * sr + cr * sp * sy) + tdy),
            (int) (size * (-cy * sr) + tdx), (int) (size * (cp * cr - sp * sy * sr) + tdy),
            (int) (size * sy + tdx), (int) (size * (-cy * sp) + tdy)};
    }
}
