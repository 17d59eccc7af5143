package dev.headpose.core;

/** One detected face in frame pixels: box, score and the five SCRFD keypoints. */
public final class Face {
    public final float x1;
    public final float y1;
    public final float x2;
    public final float y2;
    public final float score;
    /** Eyes, nose, mouth corners as x0, y0, x1, y1 ... x4, y4 (zeros when the model has none). */
    public final float[] keypoints;

    public Face(float x1, float y1, float x2, float y2, float score, float[] keypoints) {
        this.x1 = x1;
        this.y1 = y1;
        this.x2 = x2;
        this.y2 = y2;
        this.score = score;
        this.keypoints = keypoints;
    }

    /** {x1, y1, x2, y2}. */
    public float[] box() {
        return new float[] {x1, y1, x2, y2};
    }
}
