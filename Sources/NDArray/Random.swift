#if canImport(Glibc)
import Glibc
#endif

/// A seeded pseudo-random generator: xoshiro256** 1.0 (Blackman and Vigna, 2018), its
/// state filled from the seed by SplitMix64 as its authors recommend. The same seed gives
/// the same numbers on every run and machine: every value is computed with integer
/// arithmetic and correctly rounded IEEE operations in a fixed order, and arrays fill
/// in C order. The values differ from NumPy's (NumPy uses PCG64 and other samplers).
public struct RandomGenerator: Sendable {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64
    /// The second value of the last polar-method pair, used by the next normal draw.
    private var spareNormal: Double?

    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitmix(); s1 = splitmix(); s2 = splitmix(); s3 = splitmix()
        spareNormal = nil
    }

    /// A generator seeded from the operating system (different on every run).
    public static func fromEntropy() -> RandomGenerator {
        var system = SystemRandomNumberGenerator()
        return RandomGenerator(seed: system.next())
    }

    // MARK: scalars

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
        return result
    }

    @inline(__always)
    private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1) with 53 random bits.
    @inline(__always)
    public mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Uniform in [0, 1) with 24 random bits.
    @inline(__always)
    public mutating func nextFloat() -> Float { Float(next() >> 40) * 0x1.0p-24 }

    /// Uniform in 0..<n, unbiased (Lemire's multiply-and-reject); n > 0.
    @inline(__always)
    public mutating func next(below n: UInt64) -> UInt64 {
        var m = next().multipliedFullWidth(by: n)
        if m.low < n {
            let threshold = (0 &- n) % n
            while m.low < threshold { m = next().multipliedFullWidth(by: n) }
        }
        return m.high
    }

    /// Standard normal (Marsaglia's polar method: pairs of values from pairs of uniforms).
    public mutating func nextNormal() -> Double {
        if let v = spareNormal { spareNormal = nil; return v }
        var u = 0.0, v = 0.0, s = 0.0
        repeat {
            u = 2 * nextDouble() - 1
            v = 2 * nextDouble() - 1
            s = u * u + v * v
        } while s >= 1 || s == 0
        let m = (-2 * Glibc.log(s) / s).squareRoot()
        spareNormal = v * m
        return u * m
    }

    /// The largest mean poisson accepts (NumPy's bound: counts must fit in int64).
    public static let poissonMaxMean = Double(Int64.max) - 10 * Double(Int64.max).squareRoot()

    /// A Poisson count of mean `lam` (>= 0): multiplication of uniforms below 10,
    /// Hörmann's transformed rejection (PTRS, 1993) above, as NumPy does.
    public mutating func nextPoisson(_ lam: Double) -> Int64 {
        if lam == 0 { return 0 }
        if lam < 10 {
            let limit = Glibc.exp(-lam)
            var k: Int64 = 0, prod = nextDouble()
            while prod > limit { k += 1; prod *= nextDouble() }
            return k
        }
        let slam = lam.squareRoot(), loglam = Glibc.log(lam)
        let b = 0.931 + 2.53 * slam
        let a = -0.059 + 0.02483 * b
        let invalpha = 1.1239 + 1.1328 / (b - 3.4)
        let vr = 0.9277 - 3.6224 / (b - 2)
        while true {
            let u = nextDouble() - 0.5
            let v = nextDouble()
            let us = 0.5 - Swift.abs(u)
            let k = ((2 * a / us + b) * u + lam + 0.43).rounded(.down)
            if us >= 0.07 && v <= vr { return Int64(k) }
            if k < 0 || (us < 0.013 && v > us) { continue }
            if Glibc.log(v) + Glibc.log(invalpha) - Glibc.log(a / (us * us) + b)
                <= -lam + k * loglam - Glibc.lgamma(k + 1) {
                return Int64(k)
            }
        }
    }

    // MARK: arrays (filled in C order)

    /// Uniform values in [0, 1), float64 or float32.
    public mutating func uniform(_ shape: [Int], dtype: DType = .float64) throws -> NDArray {
        guard dtype.isFloat else { throw ArrayError("rand gives float32 or float64, not \(dtype.rawValue)") }
        let out = try NDArray(uninitialized: shape, dtype: dtype)
        if dtype == .float32 {
            let p = out.base(Float.self)
            for k in 0..<out.count { p[k] = nextFloat() }
        } else {
            let p = out.base(Double.self)
            for k in 0..<out.count { p[k] = nextDouble() }
        }
        return out
    }

    /// Standard normal values, float64 or float32 (drawn in float64, then rounded).
    public mutating func normal(_ shape: [Int], dtype: DType = .float64) throws -> NDArray {
        guard dtype.isFloat else { throw ArrayError("randn gives float32 or float64, not \(dtype.rawValue)") }
        let out = try NDArray(uninitialized: shape, dtype: dtype)
        if dtype == .float32 {
            let p = out.base(Float.self)
            for k in 0..<out.count { p[k] = Float(nextNormal()) }
        } else {
            let p = out.base(Double.self)
            for k in 0..<out.count { p[k] = nextNormal() }
        }
        return out
    }

    /// Integers uniform in [low, high) of an integer (or bool) dtype; both bounds must
    /// fit the dtype.
    public mutating func integers(_ low: Int64, _ high: Int64, _ shape: [Int], dtype: DType = .int64) throws -> NDArray {
        guard dtype.isInteger || dtype == .bool else {
            throw ArrayError("integers gives an integer dtype, not \(dtype.rawValue)")
        }
        guard low < high else { throw ArrayError("integers: low \(low) must be less than high \(high)") }
        let (mn, mx) = dtype.integerRange
        guard low >= mn, high - 1 <= mx else {
            throw ArrayError("integers: [\(low), \(high)) does not fit \(dtype.rawValue) (\(mn) to \(mx))")
        }
        let out = try NDArray(uninitialized: shape, dtype: dtype)
        let width = UInt64(bitPattern: high &- low)
        withUnsafeMutablePointer(to: &self) { gen in
            dtype.dispatch(FillIntegers(out: out, low: low, width: width, generator: gen))
        }
        return out
    }

    /// Poisson counts (int64) with mean `lam`: a number, or an array broadcast to `shape`
    /// (nil: the array's shape). Means must be >= 0 and at most `poissonMaxMean`.
    public mutating func poisson(_ lam: Operand, _ shape: [Int]?) throws -> NDArray {
        let means: NDArray
        switch lam {
        case .array(let a): means = a
        case .integer(let v): means = try NDArray.full([], Double(v))
        case .float(let v): means = try NDArray.full([], v)
        }
        let target = shape ?? means.shape
        let values: [Double]
        do { values = try means.broadcast(to: target).doubles() } catch {
            throw ArrayError("poisson: means of shape \(NDArray.describe(means.shape)) cannot broadcast to shape \(NDArray.describe(target))")
        }
        for v in values where !(v >= 0 && v <= RandomGenerator.poissonMaxMean) {
            if v > RandomGenerator.poissonMaxMean {
                throw ArrayError("poisson: mean \(v) is too large (counts must fit int64: at most 9.2e18)")
            }
            throw ArrayError("poisson: means must be non-negative numbers, got \(v)")
        }
        let out = try NDArray(uninitialized: target, dtype: .int64)
        let p = out.base(Int64.self)
        for (k, v) in values.enumerated() { p[k] = nextPoisson(v) }
        return out
    }
}

private struct FillIntegers: DTypeVisitor {
    let out: NDArray, low: Int64, width: UInt64
    let generator: UnsafeMutablePointer<RandomGenerator>
    func visit<T: NDScalar>(_: T.Type) {
        let p = out.base(T.self)
        for k in 0..<out.count {
            p[k] = T(fromInt: low &+ Int64(bitPattern: generator.pointee.next(below: width)))
        }
    }
}
