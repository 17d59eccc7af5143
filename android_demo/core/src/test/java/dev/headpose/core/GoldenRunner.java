package dev.headpose.core;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Runs the core module on the golden vectors the Python runtime wrote ({@code tests/android/android_golden.py})
 * and writes what it computed next to them; {@code tests/android/test_core_golden.py} compares.
 *
 * <p>Usage: {@code java -cp CLASSES dev.headpose.core.GoldenRunner GOLDEN_DIR OUT_DIR}. Every result is
 * written (no comparison here), so the Python side reports exact differences. The runner also times
 * its own stages and writes a {@code headpose-bench} report of them, which the test validates
 * against {@code benchmarks/schema.py}.
 */
public final class GoldenRunner {
    private final Path golden;
    private final Path out;
    private int n;

    private GoldenRunner(Path golden, Path out) {
        this.golden = golden;
        this.out = out;
    }

    public static void main(String[] args) throws IOException {
        if (args.length != 2) {
            System.err.println("usage: GoldenRunner GOLDEN_DIR OUT_DIR");
            System.exit(2);
        }
        Path out = Paths.get(args[1]);
        Files.createDirectories(out);
        new GoldenRunner(Paths.get(args[0]), out).run();
    }

    // -- binary I/O -------------------------------------------------------------------------------

    private ByteBuffer readBin(Map<String, Object> d) throws IOException {
        byte[] b = Files.readAllBytes(golden.resolve(Json.asString(d.get("file"), "file")));
        return ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
    }

    private static int[] shape(Map<String, Object> d) {
        List<Object> s = Json.asArray(d.get("shape"), "shape");
        int[] out = new int[s.size()];
        for (int k = 0; k < out.length; k++) {
            out[k] = Json.asInt(s.get(k), "shape");
        }
        return out;
    }

    private byte[] bytes(Object desc) throws IOException {
        return Files.readAllBytes(golden.resolve(Json.asString(Json.asObject(desc, "bin").get("file"), "file")));
    }

    private float[] floats(Object desc) throws IOException {
        ByteBuffer b = readBin(Json.asObject(desc, "bin"));
        float[] f = new float[b.remaining() / 4];
        b.asFloatBuffer().get(f);
        return f;
    }

    private double[] doubles(Object desc) throws IOException {
        ByteBuffer b = readBin(Json.asObject(desc, "bin"));
        double[] f = new double[b.remaining() / 8];
        b.asDoubleBuffer().get(f);
        return f;
    }

    private Map<String, Object> write(String name, float[] data, int... shape) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(data.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(data);
        return save(name, b.array(), "float32", shape);
    }

    private Map<String, Object> write(String name, double[] data, int... shape) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(data.length * 8).order(ByteOrder.LITTLE_ENDIAN);
        b.asDoubleBuffer().put(data);
        return save(name, b.array(), "float64", shape);
    }

    private Map<String, Object> write(String name, int[] data, int... shape) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(data.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.asIntBuffer().put(data);
        return save(name, b.array(), "int32", shape);
    }

    private Map<String, Object> save(String name, byte[] b, String dtype, int[] shape) throws IOException {
        String file = String.format("%04d_%s.bin", ++n, name);
        Files.write(out.resolve(file), b);
        Map<String, Object> d = new LinkedHashMap<>();
        d.put("file", file);
        d.put("dtype", dtype);
        List<Object> s = new ArrayList<>();
        for (int v : shape) {
            s.add(v);
        }
        d.put("shape", s);
        return d;
    }

    // -- the run ----------------------------------------------------------------------------------

    private static Map<String, Object> describe(Manifest m) {
        Map<String, Object> d = new LinkedHashMap<>();
        d.put("id", m.id);
        d.put("model", m.model);
        d.put("task", m.task);
        d.put("format", m.format);
        d.put("precision", m.precision);
        d.put("file", m.file);
        d.put("file_bytes", m.fileBytes);
        d.put("input", tensor(m.input));
        List<Object> outs = new ArrayList<>();
        for (TensorSpec t : m.outputs) {
            outs.add(tensor(t));
        }
        d.put("outputs", outs);
        if (m.task.equals("face_detection")) {
            List<Object> s = new ArrayList<>();
            for (int v : m.scrfdStrides()) {
                s.add(v);
            }
            d.put("strides", s);
            d.put("anchors_per_cell", m.scrfdAnchorsPerCell());
            d.put("score_threshold", m.scrfdScoreThreshold());
            d.put("nms_threshold", m.scrfdNmsThreshold());
            d.put("input_hw", List.of(m.input.height(), m.input.width()));
        } else {
            d.put("crop_margin", m.cropMargin());
            d.put("input_hw", List.of(m.input.height(), m.input.width()));
            d.put("ortho6d_name", m.output("ortho6d", 0).name);
        }
        return d;
    }

    private static Map<String, Object> tensor(TensorSpec t) {
        Map<String, Object> d = new LinkedHashMap<>();
        d.put("name", t.name);
        List<Object> s = new ArrayList<>();
        for (int v : t.shape) {
            s.add(v);
        }
        d.put("shape", s);
        d.put("dtype", t.dtype);
        d.put("role", t.role);
        d.put("stride", t.stride == 0 ? null : t.stride);
        d.put("quantization", t.isQuantized() ? Map.of("scale", t.quantScale, "zero_point", t.quantZeroPoint) : null);
        if (t.layout != null) {
            d.put("layout", t.layout);
            d.put("color", t.color);
            d.put("mean", List.of((double) t.mean[0], (double) t.mean[1], (double) t.mean[2]));
            d.put("std", List.of((double) t.std[0], (double) t.std[1], (double) t.std[2]));
        }
        return d;
    }

    private static double ms(long t0) {
        return (System.nanoTime() - t0) / 1e6;
    }

    /**
     * Golden vectors of real converted TFLite artifacts: the converter's own manifests, outputs
     * keyed by tensor name (looked up through the manifest's roles, as the app does).
     */
    private void runArtifacts(Map<String, Object> index) throws IOException {
        Manifest det = Manifest.parse(Json.asString(index.get("det_manifest"), "det_manifest"), "detector manifest.json")
                .expectTask("face_detection");
        Manifest pose = Manifest.parse(Json.asString(index.get("pose_manifest"), "pose_manifest"), "pose manifest.json")
                .expectTask("head_pose");
        Map<String, Object> result = new LinkedHashMap<>();
        result.put("det_manifest", describe(det));
        result.put("pose_manifest", describe(pose));
        Scrfd scrfd = Scrfd.fromManifest(det);
        int[] strides = scrfd.strides();
        double margin = pose.cropMargin();
        String ortho = pose.output("ortho6d", 0).name;
        result.put("ortho6d_name", ortho);
        int ph = pose.input.height();
        int pw = pose.input.width();
        List<Object> frames = new ArrayList<>();
        for (Object o : Json.asArray(index.get("frames"), "frames")) {
            Map<String, Object> c = Json.asObject(o, "frame case");
            int w = Json.asInt(c.get("width"), "width");
            int h = Json.asInt(c.get("height"), "height");
            Frame frame = Frame.bgr(bytes(c.get("frame")), w, h);
            Map<String, Object> r = new LinkedHashMap<>();
            float[] detIn = new float[det.input.elementCount()];
            r.put("scale", Preprocess.letterbox(frame, det.input, detIn, 0));
            int[] ishape = det.input.shape.clone();
            r.put("det_input", write("det_input", detIn, java.util.Arrays.copyOfRange(ishape, 1, 4)));
            Map<String, Object> named = Json.asObject(c.get("outputs"), "outputs");
            float[][] scores = new float[strides.length][];
            float[][] boxes = new float[strides.length][];
            float[][] kps = new float[strides.length][];
            for (int k = 0; k < strides.length; k++) {
                scores[k] = floats(named.get(det.output("score", strides[k]).name));
                boxes[k] = floats(named.get(det.output("bbox", strides[k]).name));
                kps[k] = det.hasOutput("kps", strides[k]) ? floats(named.get(det.output("kps", strides[k]).name)) : null;
            }
            List<Face> faces = scrfd.decode(scores, boxes, kps, (Double) r.get("scale"), 0);
            float[] dets = new float[faces.size() * 5];
            float[] pts = new float[faces.size() * 10];
            for (int k = 0; k < faces.size(); k++) {
                Face f = faces.get(k);
                System.arraycopy(new float[] {f.x1, f.y1, f.x2, f.y2, f.score}, 0, dets, 5 * k, 5);
                System.arraycopy(f.keypoints, 0, pts, 10 * k, 10);
            }
            r.put("dets", write("dets", dets, faces.size(), 5));
            r.put("kps", write("kps", pts, faces.size(), 10));
            float[] pyDets = floats(c.get("dets"));
            int nf = pyDets.length / 5;
            float[] crops = new float[nf * ph * pw * 3];
            int kept = 0;
            for (int k = 0; k < nf; k++) {
                float[] box = {pyDets[5 * k], pyDets[5 * k + 1], pyDets[5 * k + 2], pyDets[5 * k + 3]};
                if (Preprocess.cropFace(frame, box, margin, pose.input, crops, kept * ph * pw * 3) != null) {
                    kept++;
                }
            }
            float[] cropsKept = new float[kept * ph * pw * 3];
            System.arraycopy(crops, 0, cropsKept, 0, cropsKept.length);
            r.put("crops", write("crops", cropsKept, kept, ph, pw, 3));
            float[] v6 = floats(c.get("pose6d"));
            double[] eul = new double[v6.length / 6 * 3];
            for (int k = 0; k < v6.length / 6; k++) {
                System.arraycopy(Rotation.eulerFromSixD(v6, 6 * k), 0, eul, 3 * k, 3);
            }
            r.put("euler", write("euler", eul, v6.length / 6, 3));
            frames.add(r);
        }
        result.put("frames", frames);
        if (index.containsKey("stream")) {
            result.put("stream", runStream(Json.asObject(index.get("stream"), "stream"), det, pose));
        }
        Files.write(out.resolve("index.json"), Json.write(result).getBytes(StandardCharsets.UTF_8));
        System.out.println("GoldenRunner: " + frames.size() + " frames of artifacts " + det.id + ", " + pose.id);
    }

    /** A {@link Model} that returns recorded outputs in call order and measures how far its inputs are from the recorded ones. */
    private final class Replay implements Model {
        private final List<Object> calls;
        private int next;
        double maxInputDiff;
        int lengthMismatches;

        Replay(List<Object> calls) {
            this.calls = calls;
        }

        @Override
        public Map<String, float[]> run(float[] input) {
            if (next >= calls.size()) {
                throw new HeadposeException.InputException("replay: call " + (next + 1) + " but only " + calls.size()
                        + " were recorded (the engine calls the model more often than the Python estimator)");
            }
            Map<String, Object> call = Json.asObject(calls.get(next++), "call");
            try {
                float[] want = floats(call.get("input"));
                if (want.length != input.length) {
                    lengthMismatches++;
                } else {
                    for (int i = 0; i < want.length; i++) {
                        maxInputDiff = Math.max(maxInputDiff, Math.abs(want[i] - input[i]));
                    }
                }
                Map<String, float[]> outs = new LinkedHashMap<>();
                for (Map.Entry<String, Object> e : Json.asObject(call.get("outputs"), "outputs").entrySet()) {
                    outs.put(e.getKey(), floats(e.getValue()));
                }
                return outs;
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }
    }

    /** The whole engine over a recorded stream of the Python estimator. */
    private Map<String, Object> runStream(Map<String, Object> stream, Manifest det, Manifest pose) throws IOException {
        Replay detReplay = new Replay(Json.asArray(stream.get("detector_calls"), "detector_calls"));
        Replay poseReplay = new Replay(Json.asArray(stream.get("pose_calls"), "pose_calls"));
        LatencyRecorder rec = new LatencyRecorder();
        HeadPoseEngine engine = new HeadPoseEngine(det, detReplay, pose, poseReplay,
                Json.asInt(stream.get("detect_every"), "detect_every"), true, 0, rec);
        List<Object> frames = new ArrayList<>();
        for (Object o : Json.asArray(stream.get("frames"), "stream frames")) {
            Map<String, Object> c = Json.asObject(o, "stream frame");
            Map<String, Object> fd = Json.asObject(c.get("frame"), "frame");
            int[] shp = shape(fd);
            Frame frame = Frame.bgr(bytes(fd), shp[1], shp[0]);
            List<Object> faces = new ArrayList<>();
            for (FaceResult f : engine.process(frame, Json.asNumber(c.get("t"), "t"))) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("track_id", f.trackId);
                m.put("box", floatList(f.box));
                m.put("score", (double) f.score);
                m.put("keypoints", floatList(f.keypoints));
                m.put("yaw", f.yaw);
                m.put("pitch", f.pitch);
                m.put("roll", f.roll);
                List<Object> r = new ArrayList<>();
                for (double v : f.rotation) {
                    r.add(v);
                }
                m.put("rotation", r);
                List<Object> ax = new ArrayList<>();
                for (int v : f.axes) {
                    ax.add(v);
                }
                m.put("axes", ax);
                faces.add(m);
            }
            frames.add(Map.of("faces", faces));
        }
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("frames", frames);
        r.put("detector_calls", detReplay.next);
        r.put("pose_calls", poseReplay.next);
        r.put("detector_input_max_diff", detReplay.maxInputDiff);
        r.put("pose_input_max_diff", poseReplay.maxInputDiff);
        r.put("input_length_mismatches", detReplay.lengthMismatches + poseReplay.lengthMismatches);
        r.put("recorded_frames", rec.frames());
        return r;
    }

    private static List<Object> floatList(float[] a) {
        List<Object> l = new ArrayList<>();
        for (float v : a) {
            l.add((double) v);
        }
        return l;
    }

    private void run() throws IOException {
        String text = new String(Files.readAllBytes(golden.resolve("index.json")), StandardCharsets.UTF_8);
        Map<String, Object> index = Json.asObject(Json.parse(text), "index.json");
        if ("tflite".equals(index.get("kind"))) {
            runArtifacts(index);
            return;
        }
        Map<String, Object> result = new LinkedHashMap<>();

        // int8/uint8 (de)quantisation
        List<Object> quant = new ArrayList<>();
        for (Object o : Json.asArray(index.get("quant"), "quant")) {
            Map<String, Object> q = Json.asObject(o, "quant case");
            boolean signed = "int8".equals(q.get("dtype"));
            double scale = Json.asNumber(q.get("scale"), "scale");
            int zero = Json.asInt(q.get("zero_point"), "zero_point");
            float[] x = floats(q.get("x"));
            byte[] qb = new byte[x.length];
            Quant.quantize(x, 0, x.length, scale, zero, signed, qb, 0);
            int[] qi = new int[x.length];
            for (int i = 0; i < x.length; i++) {
                qi[i] = signed ? qb[i] : qb[i] & 0xff;
            }
            float[] deq = new float[x.length];
            Quant.dequantize(qb, 0, x.length, scale, zero, signed, deq, 0);
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("q", write("quant", qi, x.length));
            r.put("deq", write("deq", deq, x.length));
            quant.add(r);
        }
        result.put("quant", quant);

        // manifests: parse, echo, round-trip through the JSON writer, reject the broken ones
        Manifest det = Manifest.parse(Json.asString(index.get("det_manifest"), "det_manifest"), "det manifest");
        Manifest pose = Manifest.parse(Json.asString(index.get("pose_manifest"), "pose_manifest"), "pose manifest");
        Manifest poseAscii = Manifest.parse(Json.asString(index.get("pose_manifest_ascii"), "ascii"), "pose ascii");
        result.put("det_manifest", describe(det));
        result.put("pose_manifest", describe(pose));
        result.put("pose_manifest_ascii", describe(poseAscii));
        result.put("pose_manifest_roundtrip", Json.write(pose.raw));
        result.put("pose_manifest_ascii_roundtrip", Json.write(poseAscii.raw));
        List<Object> broken = new ArrayList<>();
        for (Object o : Json.asArray(index.get("broken_manifests"), "broken_manifests")) {
            Map<String, Object> b = Json.asObject(o, "broken");
            String verdict;
            try {
                Manifest.parse(Json.asString(b.get("text"), "text"), Json.asString(b.get("why"), "why"));
                verdict = "accepted";
            } catch (HeadposeException.ManifestException e) {
                verdict = "ManifestException: " + e.getMessage();
            }
            broken.add(verdict);
        }
        result.put("broken_manifests", broken);
        try {
            det.expectTask("head_pose");
            result.put("wrong_task", "accepted");
        } catch (HeadposeException.ManifestException e) {
            result.put("wrong_task", "ManifestException: " + e.getMessage());
        }

        // frames: letterbox, decode, crops, Euler, axes
        Scrfd scrfd = Scrfd.fromManifest(det);
        int[] strides = scrfd.strides();
        double margin = pose.cropMargin();
        int ih = det.input.height();
        int iw = det.input.width();
        int ph = pose.input.height();
        int pw = pose.input.width();
        Map<String, List<Double>> timings = new LinkedHashMap<>();
        for (String s : new String[] {"detector_preprocess", "decode", "crop", "pose_decode", "smoothing"}) {
            timings.put(s, new ArrayList<>());
        }
        List<Object> frames = new ArrayList<>();
        for (Object o : Json.asArray(index.get("frames"), "frames")) {
            Map<String, Object> c = Json.asObject(o, "frame case");
            int w = Json.asInt(c.get("width"), "width");
            int h = Json.asInt(c.get("height"), "height");
            Frame frame = Frame.bgr(bytes(c.get("frame")), w, h);
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("id", c.get("id"));

            float[] detIn = new float[3 * ih * iw];
            long t0 = System.nanoTime();
            double scale = Preprocess.letterbox(frame, det.input, detIn, 0);
            timings.get("detector_preprocess").add(ms(t0));
            r.put("scale", scale);
            r.put("det_input", write("det_input", detIn, 3, ih, iw));

            float[][] scores = new float[strides.length][];
            float[][] boxes = new float[strides.length][];
            float[][] kps = new float[strides.length][];
            for (Object ro : Json.asArray(c.get("raw"), "raw")) {
                Map<String, Object> raw = Json.asObject(ro, "raw");
                String role = Json.asString(raw.get("role"), "role");
                int stride = Json.asInt(raw.get("stride"), "stride");
                det.output(role, stride); // the manifest must list it
                int si = -1;
                for (int k = 0; k < strides.length; k++) {
                    if (strides[k] == stride) {
                        si = k;
                    }
                }
                float[] data = floats(raw.get("data"));
                if (role.equals("score")) {
                    scores[si] = data;
                } else if (role.equals("bbox")) {
                    boxes[si] = data;
                } else {
                    kps[si] = data;
                }
            }
            t0 = System.nanoTime();
            List<Face> faces = scrfd.decode(scores, boxes, kps, scale, 0);
            timings.get("decode").add(ms(t0));
            float[] dets = new float[faces.size() * 5];
            float[] pts = new float[faces.size() * 10];
            for (int k = 0; k < faces.size(); k++) {
                Face f = faces.get(k);
                System.arraycopy(new float[] {f.x1, f.y1, f.x2, f.y2, f.score}, 0, dets, 5 * k, 5);
                System.arraycopy(f.keypoints, 0, pts, 10 * k, 10);
            }
            r.put("dets", write("dets", dets, faces.size(), 5));
            r.put("kps", write("kps", pts, faces.size(), 10));

            // crops of the Python boxes (so crop parity is not hostage to decode parity)
            float[] pyDets = floats(c.get("dets"));
            int nf = pyDets.length / 5;
            float[] crops = new float[nf * ph * pw * 3];
            int[] cropBoxes = new int[nf * 4];
            List<Integer> kept = new ArrayList<>();
            t0 = System.nanoTime();
            for (int k = 0; k < nf; k++) {
                float[] box = {pyDets[5 * k], pyDets[5 * k + 1], pyDets[5 * k + 2], pyDets[5 * k + 3]};
                int[] eb = Preprocess.expandBox(box, margin);
                eb[2] = Math.min(eb[2], w);
                eb[3] = Math.min(eb[3], h);
                System.arraycopy(eb, 0, cropBoxes, 4 * k, 4);
                if (Preprocess.cropFace(frame, box, margin, pose.input, crops, kept.size() * ph * pw * 3) != null) {
                    kept.add(k);
                }
            }
            if (nf > 0) {
                timings.get("crop").add(ms(t0));
            }
            float[] cropsKept = new float[kept.size() * ph * pw * 3];
            System.arraycopy(crops, 0, cropsKept, 0, cropsKept.length);
            r.put("crops", write("crops", cropsKept, kept.size(), ph, pw, 3));
            r.put("crop_boxes", write("crop_boxes", cropBoxes, nf, 4));
            int[] keptArr = kept.stream().mapToInt(Integer::intValue).toArray();
            r.put("crop_kept", write("crop_kept", keptArr, keptArr.length));

            // Euler from the raw network 6-vectors (Gram-Schmidt on non-orthonormal vectors)
            float[] v6 = floats(c.get("pose6d"));
            int np6 = v6.length / 6;
            double[] eul = new double[np6 * 3];
            t0 = System.nanoTime();
            for (int k = 0; k < np6; k++) {
                System.arraycopy(Rotation.eulerFromSixD(v6, 6 * k), 0, eul, 3 * k, 3);
            }
            if (np6 > 0) {
                timings.get("pose_decode").add(ms(t0));
            }
            r.put("euler", write("euler", eul, np6, 3));

            // real angles (FSA-Net): 6D -> Euler, Euler -> R -> Euler, and the drawn axes
            double[] f6 = doubles(c.get("fsa6d"));
            double[] ypr = doubles(c.get("fsa_ypr"));
            int nfs = f6.length / 6;
            double[] feul = new double[nfs * 3];
            double[] back = new double[nfs * 3];
            int[] axes = new int[nfs * 8];
            for (int k = 0; k < nfs; k++) {
                double[] e = Rotation.toEuler(Rotation.fromSixD(f6, 6 * k));
                System.arraycopy(e, 0, feul, 3 * k, 3);
                double[] rt = Rotation.fromEuler(ypr[3 * k + 1], ypr[3 * k], ypr[3 * k + 2]);
                System.arraycopy(Rotation.toEuler(rt), 0, back, 3 * k, 3);
                int fi = keptArr[k];
                float[] box = {pyDets[5 * fi], pyDets[5 * fi + 1], pyDets[5 * fi + 2], pyDets[5 * fi + 3]};
                int[] eb = Preprocess.expandBox(box, margin);
                float[] ebf = {eb[0], eb[1], eb[2], eb[3]};
                System.arraycopy(Axes.points(e[1], e[0], e[2], ebf, 0.5), 0, axes, 8 * k, 8);
            }
            r.put("fsa_euler", write("fsa_euler", feul, nfs, 3));
            r.put("fsa_euler_via_matrix", write("fsa_back", back, nfs, 3));
            r.put("axes", write("axes", axes, nfs, 8));
            frames.add(r);
        }
        result.put("frames", frames);

        // tracking + per-track rotation smoothing over consecutive frames
        IoUTracker tracker = new IoUTracker();
        Map<Integer, RotationSmoother> smoothers = new HashMap<>();
        List<Object> seq = new ArrayList<>();
        for (Object o : Json.asArray(index.get("sequence"), "sequence")) {
            Map<String, Object> c = Json.asObject(o, "sequence step");
            double t = Json.asNumber(c.get("t"), "t");
            float[] d = floats(c.get("dets"));
            float[] k = floats(c.get("kps"));
            List<Face> faces = new ArrayList<>();
            for (int i = 0; i < d.length / 5; i++) {
                float[] p = new float[10];
                System.arraycopy(k, 10 * i, p, 0, 10);
                faces.add(new Face(d[5 * i], d[5 * i + 1], d[5 * i + 2], d[5 * i + 3], d[5 * i + 4], p));
            }
            List<IoUTracker.Track> tracks = tracker.update(faces);
            int[] ids = new int[tracks.size()];
            for (int i = 0; i < ids.length; i++) {
                ids[i] = tracks.get(i).id;
            }
            double[] ypr = doubles(c.get("fsa_ypr"));
            ByteBuffer kb = readBin(Json.asObject(c.get("kept"), "kept"));
            int[] kept = new int[kb.remaining() / 4];
            kb.asIntBuffer().get(kept);
            double[] sm = new double[kept.length * 9];
            double[] rots = new double[kept.length * 9];
            long t0 = System.nanoTime();
            for (int i = 0; i < kept.length; i++) {
                int tid = ids[kept[i]];
                RotationSmoother s = smoothers.computeIfAbsent(tid, x -> new RotationSmoother());
                double[] rot = Rotation.fromEuler(ypr[3 * i + 1], ypr[3 * i], ypr[3 * i + 2]);
                System.arraycopy(rot, 0, rots, 9 * i, 9);
                System.arraycopy(s.smooth(rot, t), 0, sm, 9 * i, 9);
            }
            if (kept.length > 0) {
                timings.get("smoothing").add(ms(t0));
            }
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("track_ids", write("seq_ids", ids, ids.length));
            r.put("rotations", write("seq_rotations", rots, kept.length, 9));
            r.put("smoothed", write("seq_smoothed", sm, kept.length, 9));
            seq.add(r);
        }
        result.put("sequence", seq);

        // plain One-Euro filter on Euler angles
        Map<String, Object> euro = Json.asObject(index.get("euro"), "euro");
        Map<String, Object> params = Json.asObject(euro.get("params"), "params");
        OneEuroFilter f = new OneEuroFilter(Json.asNumber(params.get("min_cutoff"), "min_cutoff"),
                Json.asNumber(params.get("beta"), "beta"), Json.asNumber(params.get("d_cutoff"), "d_cutoff"));
        List<Object> ts = Json.asArray(euro.get("t"), "t");
        double[] x = doubles(euro.get("x"));
        int dim = ts.isEmpty() ? 3 : x.length / ts.size();
        double[] y = new double[x.length];
        for (int i = 0; i < ts.size(); i++) {
            double[] xi = new double[dim];
            System.arraycopy(x, dim * i, xi, 0, dim);
            System.arraycopy(f.filter(xi, Json.asNumber(ts.get(i), "t")), 0, y, dim * i, dim);
        }
        result.put("euro", write("euro_out", y, ts.size(), dim));

        // a bench report of the runner's own stage timings (schema check on the Python side)
        LatencyRecorder rec = new LatencyRecorder();
        Map<String, Object> device = new LinkedHashMap<>();
        device.put("name", "jvm-golden-runner");
        device.put("os", System.getProperty("os.name") + " " + System.getProperty("os.version"));
        device.put("arch", System.getProperty("os.arch"));
        device.put("cores", Runtime.getRuntime().availableProcessors());
        device.put("packages", Map.of("java", System.getProperty("java.version")));
        long clock = 0;
        List<Double> pre = timings.get("detector_preprocess");
        for (int i = 0; i < pre.size(); i++) {
            double e2e = 0;
            for (String s : new String[] {"detector_preprocess", "decode", "crop", "pose_decode"}) {
                List<Double> l = timings.get(s);
                if (i < l.size()) {
                    rec.stage(s.equals("pose_decode") ? "pose" : s, l.get(i));
                    e2e += l.get(i);
                }
            }
            clock += (long) (e2e * 1e6);
            rec.frame(e2e, 1, clock);
        }
        for (double v : timings.get("smoothing")) {
            rec.stage("smoothing", v);
        }
        Map<String, Object> pipe = rec.pipeline("jvm", det, pose, 1, "cpu", 1, true, 0.0, true);
        List<Map<String, Object>> arts = List.of(BenchReport.artifact(det, "released"), BenchReport.artifact(pose, "seeded"));
        Map<String, Object> report = BenchReport.result(device, "2026-11-25T00:00:00Z", "GoldenRunner", "test",
                arts, List.of(), List.of(pipe),
                List.of("core-module stage timings on the JVM (no interpreter): a schema check, not a benchmark"));
        Files.write(out.resolve("bench_report.json"), Json.write(report).getBytes(StandardCharsets.UTF_8));
        Map<String, Object> stats = new LinkedHashMap<>();
        for (Map.Entry<String, List<Double>> e : timings.entrySet()) {
            List<Object> l = new ArrayList<>(e.getValue());
            stats.put(e.getKey(), l);
        }
        result.put("timings_ms", stats);

        Files.write(out.resolve("index.json"), Json.write(result).getBytes(StandardCharsets.UTF_8));
        System.out.println("GoldenRunner: " + frames.size() + " frames, " + seq.size() + " sequence steps -> " + out);
    }
}
