package dev.headpose.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Greedy IoU association of detections to tracks, as {@code headpose.runtime.tracking.IoUTracker}:
 * stable face ids across frames, so each face keeps its own {@link RotationSmoother}.
 *
 * <p>Pairs with IoU {@code >= iouThreshold} are matched highest overlap first; an unmatched detection
 * starts a track with the next id; a track unmatched for more than {@code maxMissed} rounds is dropped.
 */
public final class IoUTracker {
    /** One tracked face. {@link #smoother} is per-track state for the app. */
    public static final class Track {
        public final int id;
        public float[] box;
        public float score;
        public float[] keypoints;
        public int hits = 1;
        public int missed = 0;
        public final RotationSmoother smoother = new RotationSmoother();

        Track(int id, Face f) {
            this.id = id;
            this.box = f.box();
            this.score = f.score;
            this.keypoints = f.keypoints.clone();
        }
    }

    private final double iouThreshold;
    private final int maxMissed;
    private List<Track> tracks = new ArrayList<>();
    private int nextId = 1;
    private List<Integer> dropped = new ArrayList<>();
    private List<Track> lastDetected = new ArrayList<>();

    public IoUTracker(double iouThreshold, int maxMissed) {
        if (!(iouThreshold >= 0 && iouThreshold <= 1) || maxMissed < 0) {
            throw new HeadposeException.InputException("tracker expects 0 <= iou_threshold <= 1 and max_missed >= 0, "
                    + "found " + iouThreshold + ", " + maxMissed);
        }
        this.iouThreshold = iouThreshold;
        this.maxMissed = maxMissed;
    }

    public IoUTracker() {
        this(0.3, 2);
    }

    /** Drop every track and restart ids at 1. */
    public void reset() {
        tracks = new ArrayList<>();
        nextId = 1;
        dropped = new ArrayList<>();
        lastDetected = new ArrayList<>();
    }

    /** Ids of the tracks the last {@link #update} dropped. */
    public List<Integer> dropped() {
        return dropped;
    }

    /**
     * Associate one frame's detections.
     *
     * @return the track of each detection, in detection order
     */
    public List<Track> update(List<Face> dets) {
        int nd = dets.size();
        Track[] assigned = new Track[nd];
        Set<Integer> matched = new HashSet<>();
        if (!tracks.isEmpty() && nd > 0) {
            int nt = tracks.size();
            List<int[]> pairs = new ArrayList<>();
            List<Double> ious = new ArrayList<>();
            for (int d = 0; d < nd; d++) {
                for (int t = 0; t < nt; t++) {
                    double v = Scrfd.iou(dets.get(d).box(), tracks.get(t).box);
                    if (v >= iouThreshold) {
                        pairs.add(new int[] {d, t});
                        ious.add(v);
                    }
                }
            }
            Integer[] order = new Integer[pairs.size()];
            for (int k = 0; k < order.length; k++) {
                order[k] = k;
            }
            Arrays.sort(order, (a, b) -> Double.compare(-ious.get(a), -ious.get(b)));
            for (int k : order) {
                int d = pairs.get(k)[0];
                int t = pairs.get(k)[1];
                if (assigned[d] != null || matched.contains(t)) {
                    continue;
                }
                Track tr = tracks.get(t);
                Face f = dets.get(d);
                tr.box = f.box();
                tr.score = f.score;
                tr.keypoints = f.keypoints.clone();
                tr.hits += 1;
                tr.missed = 0;
                assigned[d] = tr;
                matched.add(t);
            }
        }
        List<Track> survivors = new ArrayList<>();
        dropped = new ArrayList<>();
        for (int i = 0; i < tracks.size(); i++) {
            Track tr = tracks.get(i);
            if (!matched.contains(i)) {
                tr.missed += 1;
                if (tr.missed > maxMissed) {
                    dropped.add(tr.id);
                    continue;
                }
            }
            survivors.add(tr);
        }
        for (int d = 0; d < nd; d++) {
            if (assigned[d] == null) {
                Track tr = new Track(nextId++, dets.get(d));
                survivors.add(tr);
                assigned[d] = tr;
            }
        }
        tracks = survivors;
        lastDetected = new ArrayList<>(Arrays.asList(assigned));
        return Arrays.asList(assigned);
    }

    /**
     * Tracks matched at the last update, in that detection's order (highest score first), with their
     * last boxes (for frames without detection).
     */
    public List<Track> carried() {
        List<Track> out = new ArrayList<>();
        for (Track t : lastDetected) {
            if (t.missed == 0) {
                out.add(t);
            }
        }
        return out;
    }
}
