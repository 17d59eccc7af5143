package dev.headpose.demo

import dev.headpose.core.HeadposeException
import dev.headpose.core.Manifest
import dev.headpose.core.Model
import dev.headpose.core.Quant
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.Tensor
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import java.io.Closeable
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** Where the interpreter runs the model. */
enum class Accelerator(val label: String) {
    /** CPU with the XNNPACK delegate (the default, as the Python runtime). */
    XNNPACK("xnnpack"),
    /** CPU with the built-in kernels only. */
    CPU("cpu"),
    /** LiteRT GPU delegate (OpenCL/OpenGL); unsupported ops fall back to the CPU. */
    GPU("gpu"),
}

/**
 * A `.tflite` artifact in the LiteRT [Interpreter], fed and read by tensor NAME from its manifest
 * (never by position), with int8/uint8 inputs and outputs (de)quantised like the Python runtime.
 */
class TfliteModel(
    val artifact: AssetArtifact,
    model: ByteBuffer,
    val threads: Int,
    requested: Accelerator,
) : Closeable, Model {
    val manifest: Manifest = artifact.manifest
    private var gpu: GpuDelegate? = null
    /** What actually runs: GPU falls back to XNNPACK on devices the delegate does not support. */
    val accelerator: Accelerator
    val interpreter: Interpreter
    private val inputIndex: Int
    private val inputTensor: Tensor
    private val inputBuffer: ByteBuffer
    private val inputBytes: ByteArray?
    private val outputs: Map<String, Int>
    private val outputBuffers: Map<Int, ByteBuffer>
    private val outputArgs: Map<Int, Any>

    init {
        val options = Interpreter.Options().setNumThreads(threads)
        var acc = requested
        if (requested == Accelerator.GPU) {
            CompatibilityList().use { compat ->
                if (compat.isDelegateSupportedOnThisDevice) {
                    gpu = GpuDelegate(compat.bestOptionsForThisDevice).also { options.addDelegate(it) }
                } else {
                    acc = Accelerator.XNNPACK
                }
            }
        }
        accelerator = acc
        options.setUseXNNPACK(acc != Accelerator.CPU)
        interpreter = Interpreter(model, options)
        inputIndex = indexOf(manifest.input.name, true)
        inputTensor = interpreter.getInputTensor(inputIndex)
        if (inputTensor.numElements() != manifest.input.elementCount()) {
            throw HeadposeException.ManifestException(
                "artifact '${manifest.id}': input '${manifest.input.name}' has ${inputTensor.shape().contentToString()} " +
                    "in the model but ${manifest.input.shape.contentToString()} in manifest.json; re-create the artifact"
            )
        }
        inputBuffer = ByteBuffer.allocateDirect(inputTensor.numBytes()).order(ByteOrder.nativeOrder())
        inputBytes = if (inputTensor.dataType() == DataType.FLOAT32) null else ByteArray(inputTensor.numElements())
        outputs = manifest.outputs.associate { it.name to indexOf(it.name, false) }
        outputBuffers = outputs.values.associateWith {
            ByteBuffer.allocateDirect(interpreter.getOutputTensor(it).numBytes()).order(ByteOrder.nativeOrder())
        }
        outputArgs = outputBuffers
    }

    private fun indexOf(name: String, input: Boolean): Int = try {
        if (input) interpreter.getInputIndex(name) else interpreter.getOutputIndex(name)
    } catch (e: IllegalArgumentException) {
        val n = if (input) interpreter.inputTensorCount else interpreter.outputTensorCount
        val names = (0 until n).joinToString { i ->
            (if (input) interpreter.getInputTensor(i) else interpreter.getOutputTensor(i)).name()
        }
        throw HeadposeException.ManifestException(
            "artifact '${manifest.id}': the model has no ${if (input) "input" else "output"} tensor '$name' " +
                "named in manifest.json (it has: $names); the manifest belongs to another model file"
        )
    }

    /**
     * Run once.
     *
     * @param input normalised image in the manifest's layout, exactly [Manifest.input] elements
     * @return output name -> float values (dequantised)
     */
    override fun run(input: FloatArray): Map<String, FloatArray> {
        inputBuffer.rewind()
        when (inputTensor.dataType()) {
            DataType.FLOAT32 -> inputBuffer.asFloatBuffer().put(input)
            DataType.INT8, DataType.UINT8 -> {
                val q = inputTensor.quantizationParams()
                Quant.quantize(input, 0, input.size, q.scale.toDouble(), q.zeroPoint,
                    inputTensor.dataType() == DataType.INT8, inputBytes, 0)
                inputBuffer.put(inputBytes!!)
            }
            else -> throw HeadposeException.ManifestException(
                "artifact '${manifest.id}': input type ${inputTensor.dataType()} is not supported " +
                    "(expected float32, int8 or uint8)"
            )
        }
        inputBuffer.rewind()
        outputBuffers.values.forEach { it.rewind() }
        interpreter.runForMultipleInputsOutputs(arrayOf<Any>(inputBuffer), outputArgs)
        return outputs.mapValues { (_, idx) -> read(idx) }
    }

    private fun read(idx: Int): FloatArray {
        val t = interpreter.getOutputTensor(idx)
        val buf = outputBuffers.getValue(idx)
        buf.rewind()
        val out = FloatArray(t.numElements())
        when (t.dataType()) {
            DataType.FLOAT32 -> buf.asFloatBuffer().get(out)
            DataType.INT8, DataType.UINT8 -> {
                val bytes = ByteArray(out.size)
                buf.get(bytes)
                val q = t.quantizationParams()
                Quant.dequantize(bytes, 0, out.size, q.scale.toDouble(), q.zeroPoint, t.dataType() == DataType.INT8, out, 0)
            }
            else -> throw HeadposeException.ManifestException(
                "artifact '${manifest.id}': output type ${t.dataType()} is not supported"
            )
        }
        return out
    }

    override fun close() {
        interpreter.close()
        gpu?.close()
        gpu = null
    }
}
