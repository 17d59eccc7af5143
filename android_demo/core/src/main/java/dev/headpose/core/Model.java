package dev.headpose.core;

import java.util.Map;

/**
 * One model invocation, as the app's interpreter wrapper provides it (LiteRT on the phone; a replay
 * of recorded outputs in the golden test).
 */
public interface Model {
    /**
     * Run the model on one input.
     *
     * @param input normalised image, batch 1, in the layout of the manifest's input tensor
     * @return output tensor name (as in the manifest) -> float values (dequantised)
     */
    Map<String, float[]> run(float[] input);
}
