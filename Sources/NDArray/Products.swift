import CBLASShims
#if canImport(Glibc)
import Glibc
#endif

/// Matrix products of 1-D and 2-D arrays (NumPy's dot and matmul for those): inner
/// product, matrix-vector, vector-matrix, matrix-matrix. The result dtype is NumPy's
/// promotion of the two; integers wrap as NumPy's do; bool is "any of a and b".
/// Large float products go to OpenBLAS when it is installed (opened with dlopen; NumPy's
/// own choice, several times faster than a portable kernel); otherwise, and for small
/// products, a cache-blocked kernel on packed panels: 4 x 4 register tiles over panels
/// that stay in L1/L2, threads over row blocks.
extension NDArray {
    /// Large float products use OpenBLAS when it loads (set NXLUA_OPENBLAS=0 in the
    /// environment, or this to false, for nxlua's own kernel: other rounding order,
    /// no BLAS threads).
    nonisolated(unsafe) public static var useOpenBLAS: Bool = {
        guard let v = getenv("NXLUA_OPENBLAS") else { return true }
        return String(cString: v) != "0"
    }()

    /// a @ b for 1-D and 2-D arrays.
    public static func matmul(_ a: NDArray, _ b: NDArray) throws -> NDArray {
        for (i, x) in [a, b].enumerated() where x.ndim == 0 {
            throw ArrayError("matmul: input operand \(i) is a 0-d array (a number); multiply numbers with *")
        }
        return try product("matmul", a, b)
    }

    /// NumPy's dot for 0-D, 1-D and 2-D arrays (a 0-d operand multiplies elementwise).
    public static func dot(_ a: NDArray, _ b: NDArray) throws -> NDArray {
        if a.ndim == 0 || b.ndim == 0 { return try binary(.mul, .array(a), .array(b)) }
        return try product("dot", a, b)
    }

    private static func product(_ name: String, _ a: NDArray, _ b: NDArray) throws -> NDArray {
        guard a.ndim <= 2, b.ndim <= 2 else {
            throw ArrayError("\(name): arrays of 1 or 2 dimensions are supported, got shapes \(describe(a.shape)) and \(describe(b.shape))")
        }
        // (m, k) @ (k, n), vectors as one row (a) or one column (b)
        let m = a.ndim == 2 ? a.shape[0] : 1, k = a.shape[a.ndim - 1]
        let kb = b.shape[0], n = b.ndim == 2 ? b.shape[1] : 1
        guard k == kb else {
            throw ArrayError("\(name): shapes \(describe(a.shape)) and \(describe(b.shape)) not aligned: "
                             + "\(k) (dim \(a.ndim - 1)) != \(kb) (dim 0)")
        }
        let t = DType.promote(a.dtype, b.dtype)
        let work: DType = t == .bool ? .uint8 : t
        let x = try a.contiguous(as: t).reinterpreted(as: work), y = try b.contiguous(as: t).reinterpreted(as: work)
        var shape: [Int] = []
        if a.ndim == 2 { shape.append(m) }
        if b.ndim == 2 { shape.append(n) }
        let out = try NDArray(zeros: shape, dtype: work)
        if m > 0 && n > 0 {
            switch work {
            case .float64: MatrixKernels.float(Double.self, x, y, out, m, n, k)
            case .float32: MatrixKernels.float(Float.self, x, y, out, m, n, k)
            case .int8: MatrixKernels.integer(Int8.self, x, y, out, m, n, k)
            case .int16: MatrixKernels.integer(Int16.self, x, y, out, m, n, k)
            case .int32: MatrixKernels.integer(Int32.self, x, y, out, m, n, k)
            case .int64: MatrixKernels.integer(Int64.self, x, y, out, m, n, k)
            case .uint8: MatrixKernels.integer(UInt8.self, x, y, out, m, n, k, logical: t == .bool)
            case .uint16: MatrixKernels.integer(UInt16.self, x, y, out, m, n, k)
            case .uint32: MatrixKernels.integer(UInt32.self, x, y, out, m, n, k)
            case .uint64: MatrixKernels.integer(UInt64.self, x, y, out, m, n, k)
            case .bool: break  // computed as uint8
            }
        }
        return out.reinterpreted(as: t)
    }
}

enum MatrixKernels {
    /// Integer products: rows of C accumulate k scaled rows of B (the j loop vectorises),
    /// wrapping as NumPy's integer arithmetic; `logical`: bool's or-of-ands.
    static func integer<T: FixedWidthInteger & NDScalar>(_: T.Type, _ a: NDArray, _ b: NDArray, _ c: NDArray,
                                                       _ m: Int, _ n: Int, _ k: Int, logical: Bool = false) {
        let threads = min(threadCount(elements: m * n * k / 8), m)
        parallel(threads) { t in
            let pa = a.base(T.self), pb = b.base(T.self), pc = c.base(T.self)
            for i in partition(m, threads, t) {
                let row = pc + i * n
                if logical {
                    // bool: or of ands (a sum would wrap to 0 after 256 trues in uint8)
                    for p in 0..<k {
                        let x = pa[i * k + p], brow = pb + p * n
                        if x == 0 { continue }
                        for j in 0..<n { row[j] |= brow[j] }
                    }
                } else if n == 1 {
                    var acc: T = 0
                    for p in 0..<k { acc = acc &+ pa[i * k + p] &* pb[p] }
                    row[0] = acc
                } else {
                    for p in 0..<k {
                        let x = pa[i * k + p], brow = pb + p * n
                        if x == 0 { continue }
                        for j in 0..<n { row[j] = row[j] &+ x &* brow[j] }
                    }
                }
            }
        }
    }

    static func float<T: BinaryFloatingPoint & NDScalar & SIMDScalar>(_: T.Type, _ a: NDArray, _ b: NDArray, _ c: NDArray,
                                                                    _ m: Int, _ n: Int, _ k: Int) {
        let threads = min(threadCount(elements: m * n * k / 8), (m + 3) / 4)
        if n == 1 {
            // matrix-vector and inner products: one dot product per row
            parallel(min(threads, m)) { t in
                let pa = a.base(T.self), pb = b.base(T.self), pc = c.base(T.self)
                for i in partition(m, min(threads, m), t) { pc[i] = dotProduct(pa + i * k, pb, k) }
            }
            return
        }
        if m == 1 || m * n * k < 32768 {
            // vector-matrix and small products: scaled rows of B added into rows of C
            parallel(threads) { t in
                let pa = a.base(T.self), pb = b.base(T.self), pc = c.base(T.self)
                for i in partition(m, threads, t) {
                    let row = pc + i * n
                    for p in 0..<k {
                        let x = pa[i * k + p], brow = pb + p * n
                        for j in 0..<n { row[j] += x * brow[j] }
                    }
                }
            }
            return
        }
        if NDArray.useOpenBLAS, max(m, n, k) <= Int(Int32.max) {
            let (mi, ni, ki) = (Int32(m), Int32(n), Int32(k))
            if T.self == Double.self,
               nxblas_dgemm(mi, ni, ki, a.base(Double.self), b.base(Double.self), c.base(Double.self)) == 0 { return }
            if T.self == Float.self,
               nxblas_sgemm(mi, ni, ki, a.base(Float.self), b.base(Float.self), c.base(Float.self)) == 0 { return }
        }
        parallel(threads) { t in
            // each thread: a band of rows of C (4-row aligned), with its own packed panels
            let rows = partition((m + 3) / 4, threads, t)
            let lo = rows.lowerBound * 4, hi = min(rows.upperBound * 4, m)
            if lo < hi {
                gemm(a.base(T.self) + lo * k, b.base(T.self), c.base(T.self) + lo * n, hi - lo, n, k)
            }
        }
    }

    /// Sum of x[i] * y[i], four SIMD accumulators.
    @inline(__always)
    static func dotProduct<T: BinaryFloatingPoint & SIMDScalar>(_ x: UnsafeMutablePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int) -> T {
        var a0 = SIMD4<T>(), a1 = SIMD4<T>()
        var i = 0
        let rx = UnsafeRawPointer(x), ry = UnsafeRawPointer(y), size = MemoryLayout<T>.stride
        while i + 8 <= n {
            a0 += rx.loadUnaligned(fromByteOffset: i * size, as: SIMD4<T>.self) * ry.loadUnaligned(fromByteOffset: i * size, as: SIMD4<T>.self)
            a1 += rx.loadUnaligned(fromByteOffset: (i + 4) * size, as: SIMD4<T>.self)
                * ry.loadUnaligned(fromByteOffset: (i + 4) * size, as: SIMD4<T>.self)
            i += 8
        }
        var s = (a0 + a1).sum()
        while i < n { s += x[i] * y[i]; i += 1 }
        return s
    }

    static let kc = 256, mc = 64, nc = 512

    /// C (m x n, row stride n) += A (m x k, row stride k) B (k x n, row stride n), blocked
    /// as GotoBLAS: a kc x nc panel of B and an mc x kc block of A are packed into
    /// 4-wide strips, and a 4 x 4 register tile runs down kc.
    static func gemm<T: BinaryFloatingPoint & SIMDScalar>(_ a: UnsafeMutablePointer<T>, _ b: UnsafeMutablePointer<T>,
                                                          _ c: UnsafeMutablePointer<T>, _ m: Int, _ n: Int, _ k: Int) {
        let packedB = UnsafeMutablePointer<T>.allocate(capacity: kc * (nc + 4))
        let packedA = UnsafeMutablePointer<T>.allocate(capacity: (mc + 4) * kc)
        defer { packedB.deallocate(); packedA.deallocate() }
        for jc in stride(from: 0, to: n, by: nc) {
            let ncur = min(nc, n - jc)
            for pc in stride(from: 0, to: k, by: kc) {
                let kcur = min(kc, k - pc)
                // B panel: strips of 4 columns, kcur rows each, zero-padded on the right
                for js in stride(from: 0, to: ncur, by: 4) {
                    let w = min(4, ncur - js), strip = packedB + js * kcur
                    for p in 0..<kcur {
                        let src = b + (pc + p) * n + jc + js
                        for q in 0..<4 { strip[p * 4 + q] = q < w ? src[q] : 0 }
                    }
                }
                for ic in stride(from: 0, to: m, by: mc) {
                    let mcur = min(mc, m - ic)
                    // A block: strips of 4 rows, column by column, zero-padded at the bottom
                    for ist in stride(from: 0, to: mcur, by: 4) {
                        let h = min(4, mcur - ist), strip = packedA + ist * kcur
                        for r in 0..<4 {
                            if r < h {
                                let src = a + (ic + ist + r) * k + pc
                                for p in 0..<kcur { strip[p * 4 + r] = src[p] }
                            } else {
                                for p in 0..<kcur { strip[p * 4 + r] = 0 }
                            }
                        }
                    }
                    for js in stride(from: 0, to: ncur, by: 4) {
                        for ist in stride(from: 0, to: mcur, by: 4) {
                            tile(packedA + ist * kcur, packedB + js * kcur, kcur,
                                 c + (ic + ist) * n + jc + js, n, min(4, mcur - ist), min(4, ncur - js))
                        }
                    }
                }
            }
        }
    }

    /// The 4 x 4 register tile: C[0..<h, 0..<w] += A strip (k x 4) times B strip (k x 4).
    @inline(__always)
    static func tile<T: BinaryFloatingPoint & SIMDScalar>(_ a: UnsafeMutablePointer<T>, _ b: UnsafeMutablePointer<T>, _ k: Int,
                                                          _ c: UnsafeMutablePointer<T>, _ ldc: Int, _ h: Int, _ w: Int) {
        var c0 = SIMD4<T>(), c1 = SIMD4<T>(), c2 = SIMD4<T>(), c3 = SIMD4<T>()
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b), size = MemoryLayout<T>.stride
        for p in 0..<k {
            let bv = rb.loadUnaligned(fromByteOffset: p * 4 * size, as: SIMD4<T>.self)
            let av = ra.loadUnaligned(fromByteOffset: p * 4 * size, as: SIMD4<T>.self)
            c0 += SIMD4(repeating: av[0]) * bv
            c1 += SIMD4(repeating: av[1]) * bv
            c2 += SIMD4(repeating: av[2]) * bv
            c3 += SIMD4(repeating: av[3]) * bv
        }
        @inline(__always) func store(_ r: Int, _ v: SIMD4<T>) {
            guard r < h else { return }
            let dst = c + r * ldc
            if w == 4 {
                let raw = UnsafeMutableRawPointer(dst)
                raw.storeBytes(of: raw.loadUnaligned(as: SIMD4<T>.self) + v, as: SIMD4<T>.self)
            } else {
                for q in 0..<w { dst[q] += v[q] }
            }
        }
        store(0, c0); store(1, c1); store(2, c2); store(3, c3)
    }
}
