package dev.headpose.core;

import java.util.Arrays;

/**
 * One input or output tensor of an artifact, as {@code manifest.json} describes it
 * (Python: {@code headpose.runtime.manifest.TensorSpec}).
 *
 * <p>The app finds tensors by {@link #name}, never by position or shape.
 */
public final class TensorSpec {
    /** Tensor name in the model file (what the interpreter reports). */
    public final String name;
    /** Static shape; the batch dimension of pose models may be resized at run time. */
    public final int[] shape;
    /** NumPy dtype name ({@code float32}, {@code int8}, {@code uint8}...). */
    public final String dtype;
    /** {@code image} for inputs; {@code ortho6d}, {@code score}, {@code bbox}, {@code kps} for outputs. */
    public final String role;
    /** SCRFD feature stride of the output, or 0 when the manifest says {@code null}. */
    public final int stride;
    /** Quantisation scale, or 0 when the tensor is not quantised. */
    public final double quantScale;
    /** Quantisation zero point (meaningful when {@link #quantScale} is non-zero). */
    public final int quantZeroPoint;
    /** Input only: {@code NHWC} or {@code NCHW}; null for outputs. */
    public final String layout;
    /** Input only: {@code RGB} or {@code BGR}; null for outputs. */
    public final String color;
    /** Input only: per-channel mean in pixel units 0..255 (model colour order); null for outputs. */
    public final float[] mean;
    /** Input only: per-channel std in pixel units; null for outputs. */
    public final float[] std;

    TensorSpec(String name, int[] shape, String dtype, String role, int stride, double quantScale,
               int quantZeroPoint, String layout, String color, float[] mean, float[] std) {
        this.name = name;
        this.shape = shape;
        this.dtype = dtype;
        this.role = role;
        this.stride = stride;
        this.quantScale = quantScale;
        this.quantZeroPoint = quantZeroPoint;
        this.layout = layout;
        this.color = color;
        this.mean = mean;
        this.std = std;
    }

    /** Whether the tensor itself holds quantised integers. */
    public boolean isQuantized() {
        return quantScale != 0.0;
    }

    /** Number of elements of {@link #shape}. */
    public int elementCount() {
        int n = 1;
        for (int d : shape) {
            n *= d;
        }
        return n;
    }

    /** Input height in pixels (from the shape and layout). */
    public int height() {
        return "NCHW".equals(layout) ? shape[2] : shape[1];
    }

    /** Input width in pixels (from the shape and layout). */
    public int width() {
        return "NCHW".equals(layout) ? shape[3] : shape[2];
    }

    @Override
    public String toString() {
        return name + Arrays.toString(shape) + " " + dtype + " " + role + (stride != 0 ? "@" + stride : "");
    }
}
