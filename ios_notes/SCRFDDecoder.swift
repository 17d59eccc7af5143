// SCRFDDecoder.swift - raw SCRFD outputs -> faces, as runtime/scrfd.py (insightface's decoding).
// Anchor centres per stride in row-major order, `anchorsPerCell` consecutive copies per cell;
// distances are in stride units; boxes are divided by the letterbox scale; NMS with the +1 area rule.
import CoreML
import CoreGraphics

struct Face {
    var box: CGRect            // frame pixels, origin top-left
    var score: Float
    var keypoints: [CGPoint]   // eyes, nose, mouth corners (frame pixels)
}

struct SCRFDDecoder {
    let manifest: HeadposeManifest

    /// - Parameters:
    ///   - outputs: the CoreML prediction of the detector.
    ///   - letterboxScale: resized / original (from `letterbox`); coordinates are divided by it.
    func decode(_ outputs: MLFeatureProvider, letterboxScale: Double) -> [Face] {
        let d = manifest.decode
        let size = manifest.inputSize
        let na = d.anchorsPerCell ?? 2
        let thr = d.scoreThreshold ?? 0.5
        var faces: [Face] = []
        for s in d.strides ?? [8, 16, 32] {
            guard let scoreName = manifest.outputName(role: "score", stride: s),
                  let bboxName = manifest.outputName(role: "bbox", stride: s),
                  let scores = outputs.featureValue(for: scoreName)?.multiArrayValue,
                  let dist = outputs.featureValue(for: bboxName)?.multiArrayValue else { continue }
            let kps = manifest.outputName(role: "kps", stride: s).flatMap { outputs.featureValue(for: $0)?.multiArrayValue }
            let gw = size / s, gh = size / s
            let n = gh * gw * na
            for k in 0..<n {
                let score = value(scores, k, 0)
                if score < thr { continue }
                let cell = k / na                                  // na consecutive anchors per cell
                let cx = Double((cell % gw) * s), cy = Double((cell / gw) * s)
                let st = Double(s)
                let x1 = cx - Double(value(dist, k, 0)) * st, y1 = cy - Double(value(dist, k, 1)) * st
                let x2 = cx + Double(value(dist, k, 2)) * st, y2 = cy + Double(value(dist, k, 3)) * st
                var points: [CGPoint] = []
                if let kps = kps {
                    for j in 0..<5 {
                        points.append(CGPoint(x: (cx + Double(value(kps, k, 2 * j)) * st) / letterboxScale,
                                              y: (cy + Double(value(kps, k, 2 * j + 1)) * st) / letterboxScale))
                    }
                }
                faces.append(Face(box: CGRect(x: x1 / letterboxScale, y: y1 / letterboxScale,
                                              width: (x2 - x1) / letterboxScale, height: (y2 - y1) / letterboxScale),
                                  score: score, keypoints: points))
            }
        }
        return nms(faces, threshold: Double(d.nmsThreshold ?? 0.4))
    }

    /// Element [0, i, c] of a [1, N, C] float32 output, honouring the array's strides.
    private func value(_ a: MLMultiArray, _ i: Int, _ c: Int) -> Float {
        let st = a.strides
        let p = a.dataPointer.assumingMemoryBound(to: Float.self)   // outputs are float32 (see the manifest)
        return p[i * st[1].intValue + c * st[2].intValue]
    }
}

/// Greedy NMS, highest score first (stable for equal scores), areas with +1 as insightface.
func nms(_ faces: [Face], threshold: Double) -> [Face] {
    var order = faces.indices.sorted { faces[$0].score > faces[$1].score || (faces[$0].score == faces[$1].score && $0 < $1) }
    var keep: [Face] = []
    while let i = order.first {
        keep.append(faces[i])
        let a = faces[i].box
        order = order.dropFirst().filter { j in
            let b = faces[j].box
            let w = max(0, min(a.maxX, b.maxX) - max(a.minX, b.minX) + 1)
            let h = max(0, min(a.maxY, b.maxY) - max(a.minY, b.minY) + 1)
            let inter = Double(w * h)
            let areaA = Double((a.width + 1) * (a.height + 1)), areaB = Double((b.width + 1) * (b.height + 1))
            return inter / (areaA + areaB - inter) <= threshold
        }
    }
    return keep
}
