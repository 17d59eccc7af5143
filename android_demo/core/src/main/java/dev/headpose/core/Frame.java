package dev.headpose.core;

/**
 * A read-only view of 8-bit interleaved pixels: BGR from OpenCV, RGBA from CameraX / Android bitmaps.
 *
 * <p>Pixel {@code (x, y)} channel {@code c} lives at {@code data[y * rowStride + x * pixelStride + offset(c)]}.
 * The channel offsets say where red, green and blue are inside a pixel, so one resize path serves
 * every source order without copying.
 */
public final class Frame {
    public final byte[] data;
    public final int width;
    public final int height;
    /** Bytes from one row to the next (>= width * pixelStride; CameraX pads rows). */
    public final int rowStride;
    /** Bytes per pixel (3 for BGR/RGB, 4 for RGBA). */
    public final int pixelStride;
    /** Byte offsets of red, green, blue inside a pixel. */
    public final int redOffset;
    public final int greenOffset;
    public final int blueOffset;

    public Frame(byte[] data, int width, int height, int rowStride, int pixelStride,
                 int redOffset, int greenOffset, int blueOffset) {
        if (width <= 0 || height <= 0) {
            throw new HeadposeException.InputException("frame must be at least 1x1, found " + width + "x" + height);
        }
        if (rowStride < width * pixelStride || (long) rowStride * (height - 1) + (long) width * pixelStride > data.length) {
            throw new HeadposeException.InputException("frame buffer of " + data.length + " bytes is too small for "
                    + width + "x" + height + " pixels of " + pixelStride + " bytes with row stride " + rowStride);
        }
        this.data = data;
        this.width = width;
        this.height = height;
        this.rowStride = rowStride;
        this.pixelStride = pixelStride;
        this.redOffset = redOffset;
        this.greenOffset = greenOffset;
        this.blueOffset = blueOffset;
    }

    /** Tightly packed BGR (OpenCV's order), as the Python runtime reads frames. */
    public static Frame bgr(byte[] data, int width, int height) {
        return new Frame(data, width, height, width * 3, 3, 2, 1, 0);
    }

    /** RGBA rows (CameraX {@code OUTPUT_IMAGE_FORMAT_RGBA_8888}, {@code Bitmap.copyPixelsToBuffer}). */
    public static Frame rgba(byte[] data, int width, int height, int rowStride) {
        return new Frame(data, width, height, rowStride, 4, 0, 1, 2);
    }

    /**
     * Byte offset inside a pixel of channel {@code c} in the colour order {@code color}
     * ({@code "RGB"}: 0 = red; {@code "BGR"}: 0 = blue).
     */
    public int channelOffset(String color, int c) {
        boolean rgb = "RGB".equals(color);
        if (!rgb && !"BGR".equals(color)) {
            throw new HeadposeException.InputException("colour order must be RGB or BGR, found '" + color + "'");
        }
        if (c == 1) {
            return greenOffset;
        }
        return (c == 0) == rgb ? redOffset : blueOffset;
    }
}
