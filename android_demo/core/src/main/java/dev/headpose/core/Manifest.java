package dev.headpose.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * A parsed {@code manifest.json} (schema version 1): the contract between conversion and every runtime.
 *
 * <p>Validation follows {@code headpose.runtime.manifest.Manifest.from_dict}: schema version, required
 * fields, known task and format, an input with layout, colour, mean and std, at least one output.
 * The schema itself is documented in {@code runtime/manifest.py} and written as JSON Schema in
 * {@code runtime/manifest.schema.json}; {@code tests/unit/test_manifest_schema.py} checks that the fields
 * this reader requires are the ones the schema marks required.
 */
public final class Manifest {
    public static final int SCHEMA_VERSION = 1;
    public static final String MANIFEST_NAME = "manifest.json";

    public final String id;
    public final String model;
    /** {@code head_pose} or {@code face_detection}. */
    public final String task;
    public final String format;
    public final String precision;
    /** Model file name inside the artifact directory. */
    public final String file;
    public final String fileSha256;
    public final long fileBytes;
    public final TensorSpec input;
    public final List<TensorSpec> outputs;
    /** The registry decode facts copied into the manifest (scrfd or ortho6d). */
    public final Map<String, Object> decode;
    /** The whole parsed document, for fields this class does not name (quantization, parity...). */
    public final Map<String, Object> raw;

    private Manifest(Map<String, Object> d, String where) {
        raw = d;
        id = Json.asString(d.get("id"), where + ": id");
        model = Json.asString(d.get("model"), where + ": model");
        task = Json.asString(d.get("task"), where + ": task");
        format = Json.asString(d.get("format"), where + ": format");
        precision = Json.asString(d.get("precision"), where + ": precision");
        file = Json.asString(d.get("file"), where + ": file");
        fileSha256 = d.get("file_sha256") instanceof String ? (String) d.get("file_sha256") : "";
        fileBytes = d.get("file_bytes") instanceof Double ? ((Double) d.get("file_bytes")).longValue() : 0L;
        decode = Json.asObject(d.get("decode"), where + ": decode");
        input = tensor(Json.asObject(d.get("input"), where + ": input"), where + ": input", true);
        List<TensorSpec> outs = new ArrayList<>();
        List<Object> arr = Json.asArray(d.get("outputs"), where + ": outputs");
        for (int k = 0; k < arr.size(); k++) {
            outs.add(tensor(Json.asObject(arr.get(k), where + ": outputs[" + k + "]"), where + ": outputs[" + k + "]", false));
        }
        outputs = Collections.unmodifiableList(outs);
    }

    /**
     * Parse and validate a manifest.
     *
     * @param text  the JSON text of {@code manifest.json}
     * @param where name used in messages (a path or asset name)
     * @throws HeadposeException.ManifestException naming the missing or malformed field
     */
    public static Manifest parse(String text, String where) {
        Object doc;
        try {
            doc = Json.parse(text);
        } catch (HeadposeException.InputException e) {
            throw new HeadposeException.ManifestException(where + ": not valid JSON (" + e.getMessage()
                    + "); re-create the artifact with `headpose convert`");
        }
        if (!(doc instanceof Map)) {
            throw new HeadposeException.ManifestException(where + ": expected a JSON object, found " + Json.typeName(doc));
        }
        Map<String, Object> d = Json.asObject(doc, where);
        Object version = d.get("schema_version");
        if (!(version instanceof Double) || (Double) version != SCHEMA_VERSION) {
            throw new HeadposeException.ManifestException(where + ": schema_version " + version
                    + " is not supported (expected " + SCHEMA_VERSION
                    + "); re-create the artifact with this version's `headpose convert`");
        }
        String[] required = {"id", "model", "task", "format", "precision", "file", "input", "outputs", "decode"};
        List<String> missing = new ArrayList<>();
        for (String k : required) {
            if (!d.containsKey(k)) {
                missing.add(k);
            }
        }
        if (!missing.isEmpty()) {
            throw new HeadposeException.ManifestException(where + ": missing field(s) " + String.join(", ", missing)
                    + "; re-create the artifact with `headpose convert`");
        }
        Manifest m;
        try {
            m = new Manifest(d, where);
        } catch (HeadposeException.InputException e) {
            throw new HeadposeException.ManifestException(e.getMessage() + "; re-create the artifact with `headpose convert`");
        }
        if (!m.task.equals("head_pose") && !m.task.equals("face_detection")) {
            throw new HeadposeException.ManifestException(where + ": task '" + m.task
                    + "' is not one of head_pose, face_detection");
        }
        if (!m.format.equals("onnx") && !m.format.equals("tflite") && !m.format.equals("coreml")) {
            throw new HeadposeException.ManifestException(where + ": format '" + m.format
                    + "' is not one of onnx, tflite, coreml");
        }
        if (m.outputs.isEmpty()) {
            throw new HeadposeException.ManifestException(where + ": lists no outputs");
        }
        return m;
    }

    private static TensorSpec tensor(Map<String, Object> t, String where, boolean isInput) {
        String name = Json.asString(t.get("name"), where + ".name");
        List<Object> shp = Json.asArray(t.get("shape"), where + ".shape");
        int[] shape = new int[shp.size()];
        for (int k = 0; k < shape.length; k++) {
            shape[k] = Json.asInt(shp.get(k), where + ".shape[" + k + "]");
        }
        String dtype = t.containsKey("dtype") ? Json.asString(t.get("dtype"), where + ".dtype") : "float32";
        String role = t.containsKey("role") ? Json.asString(t.get("role"), where + ".role") : "";
        int stride = t.get("stride") == null ? 0 : Json.asInt(t.get("stride"), where + ".stride");
        double qs = 0.0;
        int qz = 0;
        if (t.get("quantization") != null) {
            Map<String, Object> q = Json.asObject(t.get("quantization"), where + ".quantization");
            qs = Json.asNumber(q.get("scale"), where + ".quantization.scale");
            qz = Json.asInt(q.get("zero_point"), where + ".quantization.zero_point");
        }
        String layout = null;
        String color = null;
        float[] mean = null;
        float[] std = null;
        if (isInput) {
            layout = t.get("layout") instanceof String ? (String) t.get("layout") : null;
            color = t.get("color") instanceof String ? (String) t.get("color") : null;
            mean = t.get("mean") == null ? null : floats(t.get("mean"), where + ".mean");
            std = t.get("std") == null ? null : floats(t.get("std"), where + ".std");
            boolean ok = ("NHWC".equals(layout) || "NCHW".equals(layout)) && ("RGB".equals(color) || "BGR".equals(color))
                    && mean != null && std != null && shape.length == 4;
            if (!ok) {
                throw new HeadposeException.ManifestException(where + ": input must give a 4-d shape, layout (NHWC/NCHW), "
                        + "color (RGB/BGR), mean and std; found shape " + java.util.Arrays.toString(shape) + " layout="
                        + layout + " color=" + color);
            }
        }
        return new TensorSpec(name, shape, dtype, role, stride, qs, qz, layout, color, mean, std);
    }

    private static float[] floats(Object v, String where) {
        List<Object> a = Json.asArray(v, where);
        if (a.size() != 3) {
            throw new HeadposeException.ManifestException(where + ": expected 3 numbers, found " + a.size());
        }
        float[] out = new float[3];
        for (int k = 0; k < 3; k++) {
            out[k] = (float) Json.asNumber(a.get(k), where + "[" + k + "]");
        }
        return out;
    }

    /**
     * The output with {@code role} (and {@code stride} for SCRFD; 0 = any).
     *
     * @throws HeadposeException.ManifestException when the manifest lists no such output
     */
    public TensorSpec output(String role, int stride) {
        for (TensorSpec o : outputs) {
            if (o.role.equals(role) && (stride == 0 || o.stride == stride)) {
                return o;
            }
        }
        StringBuilder have = new StringBuilder();
        for (TensorSpec o : outputs) {
            if (have.length() > 0) {
                have.append(", ");
            }
            have.append(o.stride != 0 ? o.role + "@" + o.stride : o.role);
        }
        throw new HeadposeException.ManifestException("artifact '" + id + "' has no output '"
                + (stride != 0 ? role + "@" + stride : role) + "'; it lists: " + have);
    }

    /** Whether the manifest lists an output with {@code role} at {@code stride}. */
    public boolean hasOutput(String role, int stride) {
        for (TensorSpec o : outputs) {
            if (o.role.equals(role) && (stride == 0 || o.stride == stride)) {
                return true;
            }
        }
        return false;
    }

    /**
     * Check that this artifact does {@code task}.
     *
     * @throws HeadposeException.ManifestException e.g. when a pose model is given as the detector
     */
    public Manifest expectTask(String expected) {
        if (!task.equals(expected)) {
            throw new HeadposeException.ManifestException("artifact '" + id + "' is a " + task + " model, but a "
                    + expected + " model was expected here; pass the other artifact");
        }
        return this;
    }

    // -- decode facts ---------------------------------------------------------------------------

    private double decodeNumber(String key) {
        if (!decode.containsKey(key)) {
            throw new HeadposeException.ManifestException("artifact '" + id + "': decode." + key
                    + " is missing; re-create the artifact with `headpose convert`");
        }
        return Json.asNumber(decode.get(key), "artifact '" + id + "': decode." + key);
    }

    /** SCRFD feature strides (decode.strides), e.g. {8, 16, 32}. */
    public int[] scrfdStrides() {
        List<Object> a = Json.asArray(decode.get("strides"), "artifact '" + id + "': decode.strides");
        int[] out = new int[a.size()];
        for (int k = 0; k < out.length; k++) {
            out[k] = Json.asInt(a.get(k), "decode.strides[" + k + "]");
        }
        return out;
    }

    /** SCRFD anchors per feature-map cell (decode.anchors_per_cell). */
    public int scrfdAnchorsPerCell() {
        return (int) decodeNumber("anchors_per_cell");
    }

    /** SCRFD score threshold (decode.score_threshold). */
    public double scrfdScoreThreshold() {
        return decodeNumber("score_threshold");
    }

    /** SCRFD NMS IoU threshold (decode.nms_threshold). */
    public double scrfdNmsThreshold() {
        return decodeNumber("nms_threshold");
    }

    /** Pose crop margin (decode.crop.margin), 0.2 for the yakhyo crop. */
    public double cropMargin() {
        Map<String, Object> crop = Json.asObject(decode.get("crop"), "artifact '" + id + "': decode.crop");
        return Json.asNumber(crop.get("margin"), "artifact '" + id + "': decode.crop.margin");
    }
}
