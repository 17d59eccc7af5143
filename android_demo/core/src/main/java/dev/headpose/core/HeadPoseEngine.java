package dev.headpose.core;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Detector + tracker + pose + smoothing over two models, as {@code headpose.runtime.estimator.HeadPoseEstimator}:
 * detect every {@code detectEvery} frames (between detections the tracks' last boxes are re-used),
 * associate detections to tracks, estimate every track's pose from its crop, One-Euro smooth each
 * track's rotation, read Euler angles off the (smoothed) matrix. Every tensor is found by the name
 * its manifest records. Stage timings go to a {@link LatencyRecorder}.
 *
 * <p>Not thread-safe: call it from one thread.
 */
public final class HeadPoseEngine {
    private final Manifest detManifest;
    private final Manifest poseManifest;
    private final Model detector;
    private final Model pose;
    private final Scrfd scrfd;
    private final int[] strides;
    private final String[] scoreNames;
    private final String[] bboxNames;
    private final String[] kpsNames;
    private final String ortho6d;
    private final double margin;
    private final float[] detInput;
    private final float[] poseInput;
    private final int detectEvery;
    private final boolean smooth;
    private final int maxFaces;
    private final IoUTracker tracker = new IoUTracker();
    private final LatencyRecorder recorder;
    private final List<Double> detectorRuns = new ArrayList<>();
    private final List<Double> poseRuns = new ArrayList<>();
    private double detectorFirstMs = Double.NaN;
    private double poseFirstMs = Double.NaN;
    private long frameIndex = 0;
    private int frameW = -1;
    private int frameH = -1;

    /**
     * @param detectEvery run the detector on one frame in this many (1 = every frame)
     * @param smooth      One-Euro smoothing of each track's rotation
     * @param maxFaces    keep at most this many faces per detection (0 = all)
     * @param recorder    receives stage timings ({@code detector_preprocess}, {@code detector},
     *                    {@code decode}, {@code crop}, {@code pose}, {@code smoothing}); may be null
     */
    public HeadPoseEngine(Manifest detManifest, Model detector, Manifest poseManifest, Model pose, int detectEvery,
                          boolean smooth, int maxFaces, LatencyRecorder recorder) {
        if (detectEvery < 1 || maxFaces < 0) {
            throw new HeadposeException.InputException("expected detectEvery >= 1 and maxFaces >= 0, found "
                    + detectEvery + ", " + maxFaces);
        }
        this.detManifest = detManifest.expectTask("face_detection");
        this.poseManifest = poseManifest.expectTask("head_pose");
        this.detector = detector;
        this.pose = pose;
        this.scrfd = Scrfd.fromManifest(detManifest);
        this.strides = scrfd.strides();
        scoreNames = new String[strides.length];
        bboxNames = new String[strides.length];
        kpsNames = new String[strides.length];
        for (int k = 0; k < strides.length; k++) {
            scoreNames[k] = detManifest.output("score", strides[k]).name;
            bboxNames[k] = detManifest.output("bbox", strides[k]).name;
            kpsNames[k] = detManifest.hasOutput("kps", strides[k]) ? detManifest.output("kps", strides[k]).name : null;
        }
        this.ortho6d = poseManifest.output("ortho6d", 0).name;
        this.margin = poseManifest.cropMargin();
        this.detInput = new float[detManifest.input.elementCount()];
        this.poseInput = new float[poseManifest.input.height() * poseManifest.input.width() * 3];
        this.detectEvery = detectEvery;
        this.smooth = smooth;
        this.maxFaces = maxFaces;
        this.recorder = recorder;
    }

    public Manifest detectorManifest() {
        return detManifest;
    }

    public Manifest poseManifest() {
        return poseManifest;
    }

    /** Per-call detector latencies (ms), the first call excluded (it is {@link #detectorFirstMs()}). */
    public double[] detectorRuns() {
        return toArray(detectorRuns);
    }

    /** Per-call pose-model latencies (ms), the first call excluded. */
    public double[] poseRuns() {
        return toArray(poseRuns);
    }

    public double detectorFirstMs() {
        return detectorFirstMs;
    }

    public double poseFirstMs() {
        return poseFirstMs;
    }

    private static double[] toArray(List<Double> l) {
        double[] a = new double[l.size()];
        for (int i = 0; i < a.length; i++) {
            a[i] = l.get(i);
        }
        return a;
    }

    /** Forget tracks, smoothing state, frame count and per-call timings (a new stream). */
    public void reset() {
        tracker.reset();
        frameIndex = 0;
        frameW = -1;
        frameH = -1;
        detectorRuns.clear();
        poseRuns.clear();
        detectorFirstMs = Double.NaN;
        poseFirstMs = Double.NaN;
    }

    private void stage(String name, long t0) {
        if (recorder != null) {
            recorder.stage(name, (System.nanoTime() - t0) / 1e6);
        }
    }

    /**
     * Faces and head poses of one frame (frames of a stream in order).
     *
     * @param frame  the frame's pixels
     * @param timeS  capture time in seconds, for the smoothing filter
     * @return faces, in the order of the last detection (highest score first)
     */
    public List<FaceResult> process(Frame frame, double timeS) {
        if (frame.width != frameW || frame.height != frameH) {
            if (frameW >= 0) {
                tracker.reset(); // a new frame size: tracks restart, as the Python estimator does
            }
            frameW = frame.width;
            frameH = frame.height;
        }
        List<IoUTracker.Track> tracks;
        if (frameIndex % detectEvery == 0) {
            long t0 = System.nanoTime();
            double scale = Preprocess.letterbox(frame, detManifest.input, detInput, 0);
            stage("detector_preprocess", t0);
            t0 = System.nanoTime();
            Map<String, float[]> raw = detector.run(detInput);
            double ms = (System.nanoTime() - t0) / 1e6;
            if (recorder != null) {
                recorder.stage("detector", ms);
            }
            if (Double.isNaN(detectorFirstMs)) {
                detectorFirstMs = ms;
            } else {
                detectorRuns.add(ms);
            }
            t0 = System.nanoTime();
            float[][] scores = new float[strides.length][];
            float[][] boxes = new float[strides.length][];
            float[][] kps = new float[strides.length][];
            for (int k = 0; k < strides.length; k++) {
                scores[k] = need(raw, scoreNames[k]);
                boxes[k] = need(raw, bboxNames[k]);
                kps[k] = kpsNames[k] == null ? null : need(raw, kpsNames[k]);
            }
            List<Face> faces = scrfd.decode(scores, boxes, kps, scale, maxFaces);
            stage("decode", t0);
            tracks = tracker.update(faces);
        } else {
            tracks = tracker.carried();
        }
        frameIndex++;

        List<FaceResult> out = new ArrayList<>(tracks.size());
        double cropMs = 0;
        double poseMs = 0;
        double smoothMs = 0;
        for (IoUTracker.Track t : tracks) {
            long t0 = System.nanoTime();
            int[] cropBox = Preprocess.cropFace(frame, t.box, margin, poseManifest.input, poseInput, 0);
            cropMs += (System.nanoTime() - t0) / 1e6;
            if (cropBox == null) {
                continue;
            }
            t0 = System.nanoTime();
            float[] v6 = need(pose.run(poseInput), ortho6d);
            double ms = (System.nanoTime() - t0) / 1e6;
            poseMs += ms;
            if (Double.isNaN(poseFirstMs)) {
                poseFirstMs = ms;
            } else {
                poseRuns.add(ms);
            }
            t0 = System.nanoTime();
            double[] r = Rotation.fromSixD(v6, 0);
            if (smooth) {
                r = t.smoother.smooth(r, timeS);
            }
            double[] e = Rotation.toEuler(r);
            int[] eb = Preprocess.expandBox(t.box, margin);
            int[] axes = Axes.points(e[1], e[0], e[2], new float[] {eb[0], eb[1], eb[2], eb[3]}, 0.5);
            smoothMs += (System.nanoTime() - t0) / 1e6;
            out.add(new FaceResult(t.id, t.box.clone(), t.score, t.keypoints.clone(), r, axes));
        }
        if (recorder != null) {
            recorder.stage("crop", cropMs);
            recorder.stage("pose", poseMs);
            recorder.stage("smoothing", smoothMs);
        }
        return out;
    }

    private static float[] need(Map<String, float[]> outputs, String name) {
        float[] a = outputs.get(name);
        if (a == null) {
            throw new HeadposeException.ManifestException("the model returned no output '" + name
                    + "' named in its manifest (it returned: " + String.join(", ", outputs.keySet())
                    + "); the manifest belongs to another model file");
        }
        return a;
    }
}
