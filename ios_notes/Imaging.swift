// Imaging.swift - the detector's letterbox (runtime/preprocess.py `letterbox`) with Core Image.
// The frame is resized keeping its aspect ratio into the TOP-LEFT corner of a black S x S canvas
// (not centred: Vision's .scaleFit centres, so it cannot be used for SCRFD).
import CoreImage
import CoreVideo

final class Letterboxer {
    let size: Int
    private let context = CIContext(options: [.cacheIntermediates: false])
    private var pool: CVPixelBufferPool?

    init(size: Int) {
        self.size = size
        let attrs: [String: Any] = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA,
                                    kCVPixelBufferWidthKey as String: size, kCVPixelBufferHeightKey as String: size,
                                    kCVPixelBufferIOSurfacePropertiesKey as String: [:]]
        CVPixelBufferPoolCreate(nil, nil, attrs as CFDictionary, &pool)
    }

    /// - Returns: the S x S canvas (BGRA; Core ML converts it for the RGB image input) and
    ///   scale = resized height / frame height (divide detector coordinates by it).
    func letterbox(_ frame: CVPixelBuffer) -> (CVPixelBuffer, Double)? {
        let w = Double(CVPixelBufferGetWidth(frame)), h = Double(CVPixelBufferGetHeight(frame))
        let side = Double(size)
        var newW: Double, newH: Double
        if h / w > 1.0 {                       // ih / iw == 1 for a square input
            newH = side; newW = Double(Int(newH / (h / w)))
        } else {
            newW = side; newH = Double(Int(newW * (h / w)))
        }
        newW = max(newW, 1); newH = max(newH, 1)
        var out: CVPixelBuffer?
        guard let pool = pool, CVPixelBufferPoolCreatePixelBuffer(nil, pool, &out) == kCVReturnSuccess,
              let canvas = out else { return nil }
        // Core Image's origin is bottom-left: move the resized frame up so that it touches the top edge.
        let resized = CIImage(cvPixelBuffer: frame)
            .transformed(by: CGAffineTransform(scaleX: newW / w, y: newH / h))
            .transformed(by: CGAffineTransform(translationX: 0, y: side - newH))
        let black = CIImage(color: .black).cropped(to: CGRect(x: 0, y: 0, width: side, height: side))
        context.render(resized.composited(over: black), to: canvas)
        return (canvas, newH / h)
    }
}
