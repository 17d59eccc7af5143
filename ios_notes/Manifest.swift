// Manifest.swift - the subset of an artifact's manifest.json the app needs (schema_version 1).
// Tensors are found by NAME and ROLE from the manifest, never by output order or shape.
// Its non-optional fields are the ones runtime/manifest.schema.json requires (for format coreml);
// tests/unit/test_manifest_schema.py checks that.
import Foundation

struct HeadposeManifest: Decodable {
    struct Tensor: Decodable {
        let name: String
        let shape: [Int]
        let dtype: String?        // optional as in the schema (the converters always write it)
        let role: String?
        let stride: Int?          // SCRFD outputs: 8, 16, 32
        let layout: String?       // input only
        let color: String?        // input only: "RGB"
        let mean: [Double]?       // input only; CoreML artifacts: [0, 0, 0] (normalisation is inside the model)
        let std: [Double]?        // input only; CoreML artifacts: [1, 1, 1]
    }
    struct Crop: Decodable { let margin: Double }
    struct Decode: Decodable {
        let kind: String               // "ortho6d" (pose) or "scrfd"
        let strides: [Int]?
        let anchorsPerCell: Int?
        let scoreThreshold: Float?
        let nmsThreshold: Float?
        let crop: Crop?                // pose: expand_box margin (0.2)
    }
    let schemaVersion: Int
    let id: String                     // e.g. "scrfd_500m-640-coreml-fp16"
    let model: String
    let task: String                   // "head_pose" | "face_detection"
    let format: String                 // "coreml"
    let precision: String
    let file: String
    let fileSha256: String
    let fileBytes: Int
    let input: Tensor
    let outputs: [Tensor]
    let decode: Decode

    static func load(_ url: URL) throws -> HeadposeManifest {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let m = try decoder.decode(HeadposeManifest.self, from: Data(contentsOf: url))
        guard m.schemaVersion == 1, m.format == "coreml" else {
            throw NSError(domain: "headpose", code: 1, userInfo: [NSLocalizedDescriptionKey:
                "\(url.lastPathComponent): expected a CoreML manifest of schema 1, found format \(m.format) schema \(m.schemaVersion)"])
        }
        return m
    }

    /// Input side in pixels (the input shape is [1, S, S, 3]).
    var inputSize: Int { input.shape[1] }

    /// Name of the output with `role` (and `stride` for SCRFD).
    func outputName(role: String, stride: Int? = nil) -> String? {
        outputs.first { $0.role == role && (stride == nil || $0.stride == stride) }?.name
    }
}
