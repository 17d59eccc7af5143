package dev.headpose.core;

/**
 * Affine (de)quantisation of int8/uint8 tensors, as {@code headpose.runtime.interpreter.quantize_input}:
 * {@code q = clip(round_half_even(x * (1 / scale)) + zero_point)} in float32 (XNNPACK's QUANTIZE, so an
 * int8-input artifact gets the integers its float-input model computed), {@code x = (q - zero_point) * scale}.
 */
public final class Quant {
    private Quant() {
    }

    /**
     * Quantise floats into bytes.
     *
     * @param signed true for int8 (-128..127), false for uint8 (0..255)
     */
    public static void quantize(float[] x, int offset, int n, double scale, int zeroPoint, boolean signed,
                                byte[] out, int outOffset) {
        int lo = signed ? -128 : 0;
        int hi = signed ? 127 : 255;
        float inv = 1.0f / (float) scale;
        float vmin = lo - zeroPoint;
        float vmax = hi - zeroPoint;
        for (int k = 0; k < n; k++) {
            float v = Math.max(vmin, Math.min(vmax, x[offset + k] * inv));
            out[outOffset + k] = (byte) ((int) Math.rint(v) + zeroPoint);
        }
    }

    /** Dequantise bytes (int8 when {@code signed}, else uint8) into floats. */
    public static void dequantize(byte[] q, int offset, int n, double scale, int zeroPoint, boolean signed,
                                  float[] out, int outOffset) {
        float fs = (float) scale;
        for (int k = 0; k < n; k++) {
            int v = signed ? q[offset + k] : (q[offset + k] & 0xff);
            out[outOffset + k] = (v - zeroPoint) * fs;
        }
    }
}
