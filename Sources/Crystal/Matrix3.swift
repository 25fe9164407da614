#if canImport(Glibc)
import Glibc
#endif

/// A 3-vector of Doubles (lab, detector or reciprocal-lattice coordinates).
public struct Vector3: Equatable, Sendable, CustomStringConvertible {
    public var x, y, z: Double
    public init(_ x: Double, _ y: Double, _ z: Double) { self.x = x; self.y = y; self.z = z }
    public var array: [Double] { [x, y, z] }
    public var norm: Double { (x * x + y * y + z * z).squareRoot() }
    public var normalized: Vector3 { self / norm }
    public func dot(_ o: Vector3) -> Double { x * o.x + y * o.y + z * o.z }
    public func cross(_ o: Vector3) -> Vector3 { Vector3(y * o.z - z * o.y, z * o.x - x * o.z, x * o.y - y * o.x) }
    public static func + (a: Vector3, b: Vector3) -> Vector3 { Vector3(a.x + b.x, a.y + b.y, a.z + b.z) }
    public static func - (a: Vector3, b: Vector3) -> Vector3 { Vector3(a.x - b.x, a.y - b.y, a.z - b.z) }
    public static func * (s: Double, a: Vector3) -> Vector3 { Vector3(s * a.x, s * a.y, s * a.z) }
    public static func / (a: Vector3, s: Double) -> Vector3 { Vector3(a.x / s, a.y / s, a.z / s) }
    public var description: String { "(\(x), \(y), \(z))" }
}

/// A 3x3 matrix of Doubles, row-major (m[row][column]).
public struct Matrix3: Equatable, Sendable, CustomStringConvertible {
    public var m: [[Double]]
    public init(_ rows: [[Double]]) { m = rows }
    public init(columns a: Vector3, _ b: Vector3, _ c: Vector3) {
        m = [[a.x, b.x, c.x], [a.y, b.y, c.y], [a.z, b.z, c.z]]
    }
    public static let identity = Matrix3([[1, 0, 0], [0, 1, 0], [0, 0, 1]])

    /// The rotation by `degrees` about lab axis 1 (x), 2 (y) or 3 (z), right-handed, as
    /// NXRefine's `rotmat`.
    public static func rotation(axis: Int, degrees: Double) -> Matrix3 {
        let a = degrees * .pi / 180, c = cos(a), s = sin(a)
        switch axis {
        case 1: return Matrix3([[1, 0, 0], [0, c, -s], [0, s, c]])
        case 2: return Matrix3([[c, 0, s], [0, 1, 0], [-s, 0, c]])
        default: return Matrix3([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        }
    }

    public var flat: [Double] { m[0] + m[1] + m[2] }
    public var transposed: Matrix3 { Matrix3((0..<3).map { r in (0..<3).map { c in m[c][r] } }) }
    public var determinant: Double {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    }

    /// The inverse; nil for a singular matrix (|det| below 1e-300 of its scale).
    public var inverse: Matrix3? {
        let d = determinant
        guard d.isFinite, abs(d) > 1e-300 else { return nil }
        func c(_ r0: Int, _ c0: Int, _ r1: Int, _ c1: Int) -> Double { m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0] }
        let row0: [Double] = [c(1, 1, 2, 2), -c(0, 1, 2, 2), c(0, 1, 1, 2)]
        let row1: [Double] = [-c(1, 0, 2, 2), c(0, 0, 2, 2), -c(0, 0, 1, 2)]
        let row2: [Double] = [c(1, 0, 2, 1), -c(0, 0, 2, 1), c(0, 0, 1, 1)]
        return Matrix3([row0, row1, row2].map { $0.map { $0 / d } })
    }

    public static func * (a: Matrix3, b: Matrix3) -> Matrix3 {
        var out = [[Double]](repeating: [0, 0, 0], count: 3)
        for r in 0..<3 {
            for c in 0..<3 {
                var t: Double = 0
                for k in 0..<3 { t += a.m[r][k] * b.m[k][c] }
                out[r][c] = t
            }
        }
        return Matrix3(out)
    }
    public static func * (a: Matrix3, v: Vector3) -> Vector3 {
        let r0: [Double] = a.m[0], r1: [Double] = a.m[1], r2: [Double] = a.m[2]
        let x: Double = r0[0] * v.x + r0[1] * v.y + r0[2] * v.z
        let y: Double = r1[0] * v.x + r1[1] * v.y + r1[2] * v.z
        let z: Double = r2[0] * v.x + r2[1] * v.y + r2[2] * v.z
        return Vector3(x, y, z)
    }
    public static func * (s: Double, a: Matrix3) -> Matrix3 { Matrix3(a.m.map { $0.map { s * $0 } }) }
    public var description: String { "[" + m.map { "[" + $0.map { "\($0)" }.joined(separator: ", ") + "]" }.joined(separator: ", ") + "]" }
}
