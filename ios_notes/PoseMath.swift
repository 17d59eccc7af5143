// PoseMath.swift - the pose model's 6-vector -> rotation matrix -> (pitch, yaw, roll), and the face crop box.
// Same conventions as runtime/rotation.py and runtime/preprocess.py (expand_box).
import Foundation
import CoreGraphics
import simd

/// Gram-Schmidt of the raw 6-vector into the COLUMNS of R: x = n(a1), z = n(x cross a2), y = z cross x.
func rotationFrom6D(_ v: [Float]) -> simd_double3x3 {
    precondition(v.count == 6, "the pose model outputs 6 numbers")
    let a1 = simd_double3(Double(v[0]), Double(v[1]), Double(v[2]))
    let a2 = simd_double3(Double(v[3]), Double(v[4]), Double(v[5]))
    let x = a1 / max(simd_length(a1), 1e-8)
    let c = simd_cross(x, a2)
    let z = c / max(simd_length(c), 1e-8)
    let y = simd_cross(z, x)
    return simd_double3x3(columns: (x, y, z))      // simd is column-major: R[col][row]
}

struct HeadPose { let pitch: Double; let yaw: Double; let roll: Double }   // degrees

/// Inverse of R = Rz(roll) * Ry(yaw) * Rx(pitch): pitch = atan2(R21, R22),
/// yaw = atan2(-R20, sqrt(R00^2 + R10^2)), roll = atan2(R10, R00); at gimbal lock roll = 0.
func eulerFromRotation(_ r: simd_double3x3) -> HeadPose {
    func R(_ row: Int, _ col: Int) -> Double { r[col][row] }
    let sy = (R(0, 0) * R(0, 0) + R(1, 0) * R(1, 0)).squareRoot()
    let deg = 180.0 / Double.pi
    if sy < 1e-6 {
        return HeadPose(pitch: atan2(-R(1, 2), R(1, 1)) * deg, yaw: atan2(-R(2, 0), sy) * deg, roll: 0)
    }
    return HeadPose(pitch: atan2(R(2, 1), R(2, 2)) * deg, yaw: atan2(-R(2, 0), sy) * deg,
                    roll: atan2(R(1, 0), R(0, 0)) * deg)
}

/// The yakhyo/head-pose-estimation crop: the integer box grows by int(margin*h) in x and int(margin*w)
/// in y on each side; top-left clipped at 0, bottom-right at the frame. Frame pixels, origin top-left.
func expandBox(_ box: CGRect, margin: Double, frameWidth: Int, frameHeight: Int) -> CGRect? {
    let x1 = Int(box.minX), y1 = Int(box.minY), x2 = Int(box.maxX), y2 = Int(box.maxY)  // truncation, as int()
    let w = x2 - x1, h = y2 - y1
    let dx = Int(margin * Double(h)), dy = Int(margin * Double(w))
    let nx1 = max(0, x1 - dx), ny1 = max(0, y1 - dy)
    let nx2 = min(frameWidth, x2 + dx), ny2 = min(frameHeight, y2 + dy)
    guard nx2 - nx1 >= 1, ny2 - ny1 >= 1 else { return nil }
    return CGRect(x: nx1, y: ny1, width: nx2 - nx1, height: ny2 - ny1)
}
