#if canImport(Glibc)
import Glibc
#endif

/// The orientation matrix from peaks, as NXRefine's nxrefine starts it: U from two indexed
/// peaks by Busing and Levy (Acta Cryst. 22, 457 (1967), equations 23-27), and the indexing
/// of every peak by that U.
public enum Orientation {
    /// U such that U B h = G for two peaks' scattering vectors g1, g2 (head frame, NXRefine's
    /// Gvec) indexed h1, h2: the orthonormal triads of (B h1, B h2) and (g1, g2) aligned.
    public static func busingLevy(g1: Vector3, g2: Vector3, h1: Vector3, h2: Vector3, cell: UnitCell) throws -> Matrix3 {
        let b = try cell.matrixB()
        func triad(_ a: Vector3, _ c: Vector3) throws -> Matrix3 {
            let t3 = a.cross(c)
            guard a.norm > 0, t3.norm > 1e-12 * a.norm * c.norm else {
                throw CrystalError("two parallel vectors (\(a), \(c)) cannot fix an orientation: pick peaks (and indices) that are not collinear")
            }
            let t1 = a.normalized, n3 = t3.normalized
            return Matrix3(columns: t1, t1.cross(n3).normalized, n3)
        }
        let tc = try triad(b * h1, b * h2)
        let tg = try triad(g1, g2)
        return tg * tc.transposed  // Tc is orthonormal: its inverse is its transpose
    }

    /// The rotation U that best maps B h onto the measured G of indexed peaks in the least
    /// squares sense (the orthogonal Procrustes problem): the orthogonal polar factor of
    /// M = sum G (B h)^T, by Newton's iteration X <- (X + X^-T) / 2. Peaks whose residual is
    /// over 3 times the median are left out and U fitted again (peaks cut by the ends of the
    /// scan have biased frame centroids).
    public static func refineU(_ gs: [Vector3], hkl: [Vector3], use: [Bool], cell: UnitCell) throws -> Matrix3 {
        let b = try cell.matrixB()
        var chosen = gs.indices.filter { use[$0] }
        guard chosen.count >= 2 else { throw CrystalError("refining U needs at least 2 indexed peaks, got \(chosen.count)") }
        var u = Matrix3.identity
        for pass in 0..<2 {
            var m = Matrix3([[0, 0, 0], [0, 0, 0], [0, 0, 0]])
            for i in chosen {
                let c = b * hkl[i], g = gs[i]
                let outer = Matrix3([[g.x * c.x, g.x * c.y, g.x * c.z], [g.y * c.x, g.y * c.y, g.y * c.z], [g.z * c.x, g.z * c.y, g.z * c.z]])
                m = Matrix3((0..<3).map { r in (0..<3).map { k in m.m[r][k] + outer.m[r][k] } })
            }
            guard m.determinant > 0 else { throw CrystalError("the indexed peaks do not fix a proper rotation (det M = \(m.determinant))") }
            var x = (1 / abs(m.determinant).squareRoot().squareRoot()) * m  // scale near 1 for a fast start
            for _ in 0..<60 {
                guard let inv = x.inverse else { throw CrystalError("refining U: a singular matrix") }
                let next = 0.5 * Matrix3((0..<3).map { r in (0..<3).map { k in x.m[r][k] + inv.m[k][r] } })
                let change = zip(next.flat, x.flat).map { abs($0 - $1) }.max() ?? 0
                x = next
                if change < 1e-15 { break }
            }
            u = x
            if pass == 0 {
                let residuals = chosen.map { (gs[$0] - u * (b * hkl[$0])).norm }
                let median = residuals.sorted()[residuals.count / 2]
                let kept = zip(chosen, residuals).filter { $0.1 <= 3 * median + 1e-12 }.map(\.0)
                if kept.count >= 2 { chosen = kept }
            }
        }
        return u
    }

    /// `find`, then U fitted to every peak it indexes (kept if it indexes at least as well).
    public static func orient(_ gs: [Vector3], cell: UnitCell, tolerance: Double = 0.05, angleTolerance: Double = 0.5,
                              candidates: Int = 8) throws -> (u: Matrix3, indexing: Indexing) {
        let found = try find(gs, cell: cell, tolerance: tolerance, angleTolerance: angleTolerance, candidates: candidates)
        let u = try refineU(gs, hkl: found.indexing.hkl, use: found.indexing.indexed, cell: cell)
        let again = try index(gs, ub: u * cell.matrixB(), tolerance: tolerance)
        return again.score >= found.indexing.score ? (u, again) : found
    }

    public struct Indexing: Sendable {
        /// Nearest integer indices of each peak.
        public let hkl: [Vector3]
        /// |G - UB h| of each peak, 1/Angstrom (no 2 pi).
        public let residuals: [Double]
        public let indexed: [Bool]
        public var fraction: Double { indexed.isEmpty ? 0 : Double(indexed.filter { $0 }.count) / Double(indexed.count) }
        /// How well a U fits, 0 to 1: each indexed peak counts 1 - (residual / tolerance)^2,
        /// so a U that indexes as many peaks but closer wins (a loose tolerance lets wrong
        /// orientations index most peaks roughly).
        public let score: Double
        /// Root-mean-square residual of the indexed peaks, 1/Angstrom.
        public var rms: Double {
            let used = zip(residuals, indexed).filter { $0.1 }.map { $0.0 }
            return used.isEmpty ? 0 : (used.map { $0 * $0 }.reduce(0, +) / Double(used.count)).squareRoot()
        }
    }

    /// Indexes scattering vectors with UB: a peak is indexed when its G lies within
    /// `tolerance` (1/Angstrom, NXRefine's hkl_tolerance, default 0.05) of a lattice point.
    public static func index(_ gs: [Vector3], ub: Matrix3, tolerance: Double = 0.05) throws -> Indexing {
        guard let inv = ub.inverse else { throw CrystalError("the UB matrix \(ub) is singular") }
        var hkl: [Vector3] = [], res: [Double] = [], ok: [Bool] = []
        for g in gs {
            let h = inv * g
            let r = Vector3(h.x.rounded(), h.y.rounded(), h.z.rounded())
            let d = (g - ub * r).norm
            hkl.append(r); res.append(d); ok.append(d <= tolerance && r.norm > 0)
        }
        let score = gs.isEmpty ? 0 : zip(res, ok).reduce(0.0) { $0 + ($1.1 ? 1 - ($1.0 / tolerance) * ($1.0 / tolerance) : 0) } / Double(gs.count)
        return Indexing(hkl: hkl, residuals: res, indexed: ok, score: score)
    }

    /// Finds U for peaks with a known cell: for pairs among the `candidates` lowest-|G|
    /// peaks, every pair of lattice vectors matching both lengths (within `tolerance`) and
    /// the angle between them (within `angleTolerance` degrees) gives a U; the U indexing
    /// the most peaks, closest, wins (Indexing.score). An error with the numbers when none indexes `minimumFraction`.
    public static func find(_ gs: [Vector3], cell: UnitCell, tolerance: Double = 0.05, angleTolerance: Double = 0.5,
                            candidates: Int = 8, minimumFraction: Double = 0.5) throws -> (u: Matrix3, indexing: Indexing) {
        guard gs.count >= 2 else { throw CrystalError("an orientation needs at least 2 peaks, got \(gs.count)") }
        let b = try cell.matrixB()
        guard let bInv = b.inverse else { throw CrystalError("unit cell \(cell.parameters) gives a singular B matrix") }
        let order = gs.indices.filter { gs[$0].norm > 0 }.sorted { gs[$0].norm < gs[$1].norm }
        let chosen = Array(order.prefix(candidates))
        let gMax = chosen.map { gs[$0].norm }.max() ?? 0
        // lattice vectors up to gMax + tolerance, by length
        let bounds = bInv.m.map { row in Int((row.map { $0 * $0 }.reduce(0, +).squareRoot() * (gMax + tolerance)).rounded(.up)) }
        var lattice: [(h: Vector3, g: Vector3)] = []
        for h in -bounds[0]...bounds[0] {
            for k in -bounds[1]...bounds[1] {
                for l in -bounds[2]...bounds[2] where h != 0 || k != 0 || l != 0 {
                    let hv = Vector3(Double(h), Double(k), Double(l))
                    let g = b * hv
                    if g.norm <= gMax + tolerance { lattice.append((hv, g)) }
                }
            }
        }
        func matches(_ g: Vector3) -> [(h: Vector3, g: Vector3)] { lattice.filter { abs($0.g.norm - g.norm) <= tolerance } }
        var best: (u: Matrix3, indexing: Indexing)?
        let degrees = 180 / Double.pi
        for (ai, i) in chosen.enumerated() {
            let mi = matches(gs[i])
            for j in chosen[(ai + 1)...] {
                let measured = acos(max(-1, min(1, gs[i].normalized.dot(gs[j].normalized)))) * degrees
                guard measured > 5, measured < 175 else { continue }
                let mj = matches(gs[j])
                // one representative per length for the first peak: symmetry gives the rest
                for a in mi.prefix(max(1, mi.count)) {
                    for c in mj {
                        let angle = acos(max(-1, min(1, a.g.normalized.dot(c.g.normalized)))) * degrees
                        guard abs(angle - measured) <= angleTolerance,
                              let u = try? busingLevy(g1: gs[i], g2: gs[j], h1: a.h, h2: c.h, cell: cell) else { continue }
                        let ix = try index(gs, ub: u * b, tolerance: tolerance)
                        if best == nil || ix.score > best!.indexing.score { best = (u, ix) }
                    }
                }
                if let best, best.indexing.score > 0.95 { return best }
            }
        }
        guard let best, best.indexing.fraction >= minimumFraction else {
            throw CrystalError("no orientation indexes \(Int(minimumFraction * 100))% of the \(gs.count) peaks with cell \(cell.parameters) (best: \(best.map { "\(($0.indexing.fraction * 1000).rounded() / 10)" } ?? "0")% within \(tolerance) 1/A); check the cell, the geometry or the tolerance")
        }
        return best
    }
}
