package dev.headpose.core;

/**
 * Base of the core module's errors, mirroring the Python {@code HeadposeError} family.
 *
 * <p>Messages say what was expected, what was found and how to fix it.
 */
public class HeadposeException extends RuntimeException {
    public HeadposeException(String message) {
        super(message);
    }

    /** A malformed or unsupported {@code manifest.json} (Python: {@code ManifestError}). */
    public static class ManifestException extends HeadposeException {
        public ManifestException(String message) {
            super(message);
        }
    }

    /** Bad input data: wrong frame size, tensor length or parameter (Python: {@code InputError}). */
    public static class InputException extends HeadposeException {
        public InputException(String message) {
            super(message);
        }
    }
}
