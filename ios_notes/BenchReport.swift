// BenchReport.swift - time a Core ML model on the device and write a `headpose-bench` v1 result
// (benchmarks/SCHEMA.md) that `headpose bench-report` merges with the Raspberry Pi / laptop runs.
import CoreML
import Foundation
import UIKit

struct LatencyStats: Encodable {       // milliseconds; percentiles interpolate linearly (NumPy's default)
    let n: Int, mean: Double, std: Double, min: Double, p50: Double, p90: Double, p99: Double, max: Double

    init(_ samples: [Double]) {
        let a = samples.sorted()
        func pct(_ q: Double) -> Double {
            let pos = q / 100 * Double(a.count - 1)
            let lo = Int(pos.rounded(.down)), hi = Swift.min(lo + 1, a.count - 1)
            return a[lo] + (a[hi] - a[lo]) * (pos - Double(lo))
        }
        n = a.count
        mean = a.reduce(0, +) / Double(a.count)
        let m = mean
        std = (a.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(a.count)).squareRoot()   // population
        min = a.first!; max = a.last!
        p50 = pct(50); p90 = pct(90); p99 = pct(99)
    }
}

/// Model-only latency of one artifact: load, one cold call, `warmup` calls, then `runs` timed calls.
func benchModel(manifestURL: URL, modelURL: URL, input: MLFeatureProvider, computeUnits: MLComputeUnits,
                warmup: Int = 10, runs: Int = 200) throws -> [String: Any] {
    let m = try HeadposeManifest.load(manifestURL)
    let config = MLModelConfiguration()
    config.computeUnits = computeUnits
    var t = CACurrentMediaTime()
    let model = try MLModel(contentsOf: modelURL, configuration: config)
    let loadMs = (CACurrentMediaTime() - t) * 1000
    t = CACurrentMediaTime()
    _ = try model.prediction(from: input)
    let firstMs = (CACurrentMediaTime() - t) * 1000
    for _ in 0..<warmup { _ = try model.prediction(from: input) }
    var samples: [Double] = []
    for _ in 0..<runs {
        t = CACurrentMediaTime()
        _ = try model.prediction(from: input)
        samples.append((CACurrentMediaTime() - t) * 1000)
    }
    let stats = LatencyStats(samples)
    let units = ["all", "cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine"][[MLComputeUnits.all, .cpuOnly, .cpuAndGPU, .cpuAndNeuralEngine].firstIndex(of: computeUnits) ?? 0]
    return [
        "key": "coreml|\(m.model)|\(m.precision)|t1|\(units)",
        "artifact": m.id, "model": m.model, "task": m.task, "format": "coreml", "precision": m.precision,
        "runtime": "coreml", "threads": 1,                 // Core ML does not expose threads; 1 by convention
        "compute_units": units, "xnnpack": NSNull(), "batch": 1, "input_shape": m.input.shape,
        "file_sha256": m.fileSha256, "load_ms": loadMs, "first_run_ms": firstMs,
        "stats": try JSONSerialization.jsonObject(with: JSONEncoder().encode(stats)),
        "fps_model_only": 1000 / stats.mean,
    ]
}

/// The whole result file; `entries` are `benchModel` results, `manifests` the artifacts timed.
func benchResult(entries: [[String: Any]], manifests: [HeadposeManifest], pipelines: [[String: Any]] = [],
                 notes: [String] = []) -> Data {
    var sys = utsname(); uname(&sys)
    let machine = withUnsafeBytes(of: &sys.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }  // "iPhone16,1"
    let now = Date()
    let iso = ISO8601DateFormatter(); iso.formatOptions = [.withInternetDateTime]
    let stamp = DateFormatter(); stamp.dateFormat = "yyyyMMdd'T'HHmmss'Z'"; stamp.timeZone = TimeZone(identifier: "UTC")
    let name = machine
    let result: [String: Any] = [
        "schema": "headpose-bench", "schema_version": 1,
        "run_id": "\(name)-\(stamp.string(from: now))", "created_utc": iso.string(from: now),
        "tool": ["name": "ios_notes BenchReport.swift", "version": "1"],
        "device": ["name": name, "hostname": UIDevice.current.name, "cpu": machine, "board": machine,
                   "cores": ProcessInfo.processInfo.activeProcessorCount, "arch": "arm64",
                   "os": "\(UIDevice.current.systemName) \(UIDevice.current.systemVersion)",
                   "thermal_state": ProcessInfo.processInfo.thermalState.rawValue,
                   "low_power_mode": ProcessInfo.processInfo.isLowPowerModeEnabled],
        "settings": ["warmup": 10, "runs": 200, "compute_units": entries.compactMap { $0["compute_units"] }],
        "artifacts": manifests.map { ["id": $0.id, "model": $0.model, "task": $0.task, "format": $0.format,
                                      "precision": $0.precision, "file_sha256": $0.fileSha256, "file_bytes": $0.fileBytes] },
        "model_latency": entries, "pipelines": pipelines, "notes": notes,
    ]
    return try! JSONSerialization.data(withJSONObject: result, options: [.prettyPrinted, .sortedKeys])
}
