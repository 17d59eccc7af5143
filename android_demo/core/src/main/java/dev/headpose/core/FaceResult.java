package dev.headpose.core;

/** One estimated face of one frame, in frame pixels ({@code Face} of the Python estimator). */
public final class FaceResult {
    /** Stable track id, 1, 2, ... */
    public final int trackId;
    /** x1, y1, x2, y2 (the track's last detected box). */
    public final float[] box;
    public final float score;
    /** Eyes, nose, mouth corners: x0, y0 ... x4, y4. */
    public final float[] keypoints;
    /** Degrees: yaw about y, pitch about x, roll about z (R = Rz·Ry·Rx). */
    public final double yaw;
    public final double pitch;
    public final double roll;
    /** Row-major 3x3 rotation the angles come from (smoothed when smoothing is on). */
    public final double[] rotation;
    /** Centre and x/y/z axis ends for drawing ({@link Axes#points}): cx, cy, xx, xy, yx, yy, zx, zy. */
    public final int[] axes;

    FaceResult(int trackId, float[] box, float score, float[] keypoints, double[] rotation, int[] axes) {
        this.trackId = trackId;
        this.box = box;
        this.score = score;
        this.keypoints = keypoints;
        this.rotation = rotation;
        double[] e = Rotation.toEuler(rotation);
        this.pitch = e[0];
        this.yaw = e[1];
        this.roll = e[2];
        this.axes = axes;
    }
}
