// HeadPosePipeline.swift - camera frames -> SCRFD (Core ML) -> face crops -> pose (Vision + Core ML) -> angles.
//
// Bundle: SCRFD500M.mlpackage + scrfd_manifest.json, HeadPose.mlpackage + pose_manifest.json
// (the artifacts' model.mlpackage / manifest.json, renamed; see README.md).
import AVFoundation
import CoreML
import Vision

struct FacePose { let face: Face; let pose: HeadPose; let ortho6d: [Float] }

final class HeadPosePipeline: NSObject, AVCaptureVideoDataOutputSampleBufferDelegate {
    let detector: MLModel
    let detectorManifest: HeadposeManifest
    let poseModel: VNCoreMLModel
    let poseManifest: HeadposeManifest
    private let letterboxer: Letterboxer
    private let decoder: SCRFDDecoder
    var onResult: (([FacePose]) -> Void)?

    init(computeUnits: MLComputeUnits = .all) throws {
        let config = MLModelConfiguration()
        config.computeUnits = computeUnits                      // .all | .cpuAndNeuralEngine | .cpuAndGPU | .cpuOnly
        func url(_ name: String, _ ext: String) throws -> URL {
            guard let u = Bundle.main.url(forResource: name, withExtension: ext) else {
                throw NSError(domain: "headpose", code: 2, userInfo: [NSLocalizedDescriptionKey: "\(name).\(ext) is not in the app bundle"])
            }
            return u
        }
        detector = try MLModel(contentsOf: url("SCRFD500M", "mlmodelc"), configuration: config)  // Xcode compiles .mlpackage -> .mlmodelc
        detectorManifest = try HeadposeManifest.load(url("scrfd_manifest", "json"))
        poseModel = try VNCoreMLModel(for: MLModel(contentsOf: url("HeadPose", "mlmodelc"), configuration: config))
        poseManifest = try HeadposeManifest.load(url("pose_manifest", "json"))
        letterboxer = Letterboxer(size: detectorManifest.inputSize)
        decoder = SCRFDDecoder(manifest: detectorManifest)
    }

    /// Camera: set the connection's rotation so buffers arrive upright (e.g. `connection.videoRotationAngle = 90`
    /// in portrait on iOS 17, `videoOrientation = .portrait` before), so that frame pixels, boxes and Vision agree.
    func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer, from connection: AVCaptureConnection) {
        guard let frame = CMSampleBufferGetImageBuffer(sampleBuffer), let results = try? process(frame) else { return }
        onResult?(results)
    }

    func process(_ frame: CVPixelBuffer) throws -> [FacePose] {
        // 1. detector: letterbox (top-left, black) -> Core ML -> decode in frame pixels
        guard let lb = letterboxer.letterbox(frame) else { return [] }
        let (canvas, scale) = lb
        let input = try MLDictionaryFeatureProvider(dictionary: [detectorManifest.input.name: MLFeatureValue(pixelBuffer: canvas)])
        let faces = decoder.decode(try detector.prediction(from: input), letterboxScale: scale)
        if faces.isEmpty { return [] }

        // 2. pose: one Vision request per face; regionOfInterest = expanded box, scaled to 224x224
        //    without keeping the aspect ratio (.scaleFill), as runtime/preprocess.py crop_faces
        let fw = CVPixelBufferGetWidth(frame), fh = CVPixelBufferGetHeight(frame)
        let outName = poseManifest.outputName(role: "ortho6d") ?? "ortho6d"
        var requests: [(Face, VNCoreMLRequest)] = []
        for face in faces {
            guard let crop = expandBox(face.box, margin: poseManifest.decode.crop?.margin ?? 0.2,
                                       frameWidth: fw, frameHeight: fh) else { continue }
            let r = VNCoreMLRequest(model: poseModel)
            r.imageCropAndScaleOption = .scaleFill
            // Vision's normalised coordinates have their origin at the BOTTOM-left
            r.regionOfInterest = CGRect(x: crop.minX / CGFloat(fw), y: 1 - crop.maxY / CGFloat(fh),
                                        width: crop.width / CGFloat(fw), height: crop.height / CGFloat(fh))
            requests.append((face, r))
        }
        try VNImageRequestHandler(cvPixelBuffer: frame, orientation: .up).perform(requests.map { $0.1 })

        // 3. 6-vector -> rotation -> Euler (degrees)
        return requests.compactMap { face, r in
            guard let obs = (r.results as? [VNCoreMLFeatureValueObservation])?.first(where: { $0.featureName == outName }),
                  let a = obs.featureValue.multiArrayValue, a.count == 6 else { return nil }
            let v = (0..<6).map { a[$0].floatValue }
            return FacePose(face: face, pose: eulerFromRotation(rotationFrom6D(v)), ortho6d: v)
        }
    }
}
