import XCTest
import NDArray
@testable import Plot

private func array(_ v: [Double], _ shape: [Int], _ dtype: DType = .float64) throws -> NDArray {
    let a = try NDArray(zeros: shape, dtype: dtype)
    var idx = [Int](repeating: 0, count: shape.count)
    for x in v {
        try a.setValue(x, at: idx)
        var k = shape.count - 1
        while k >= 0 { idx[k] += 1; if idx[k] < shape[k] { break }; idx[k] = 0; k -= 1 }
    }
    return a
}

final class ColormapTests: XCTestCase {
    func testTablesHave256ColoursAndEnds() {
        for name in Colormap.names {
            let m = Colormap.named(name)!
            XCTAssertEqual(m.rgba8.count, 1024, name)
            let r = Colormap.named(name + "_r")!
            XCTAssertEqual(Array(r.rgba8[0..<4]), Array(m.rgba8[1020..<1024]), name)
        }
        // viridis' ends, as matplotlib's viridis(0.0, bytes=True) and viridis(1.0, bytes=True)
        // (bytes truncate: 0.143936 * 255 = 36.7 gives 36)
        let v = Colormap.named("viridis")!
        XCTAssertEqual(Array(v.rgba8[0..<4]), [68, 1, 84, 255])
        XCTAssertEqual(Array(v.rgba8[1020..<1024]), [253, 231, 36, 255])
        XCTAssertNil(Colormap.named("jet"))
        XCTAssertEqual(Colormap.named("rdbu_r")?.name, "RdBu_r")
    }

    func testIndexFollowsMatplotlib() {
        XCTAssertEqual(Colormap.index(0), 0)
        XCTAssertEqual(Colormap.index(1), 255)
        XCTAssertEqual(Colormap.index(0.5), 128)
        XCTAssertEqual(Colormap.index(255.9 / 256), 255)
        XCTAssertEqual(Colormap.index(1.0 / 256 - 1e-12), 0)
        XCTAssertEqual(Colormap.index(-3), 0)
        XCTAssertEqual(Colormap.index(7), 255)
        XCTAssertNil(Colormap.index(.nan))
    }
}

final class NormTests: XCTestCase {
    func testLinearLogSqrtSymlog() {
        XCTAssertEqual(Norm(.linear, vmin: 10, vmax: 20)(15), 0.5, accuracy: 1e-12)
        XCTAssertEqual(Norm(.log, vmin: 1, vmax: 1000)(10), 1.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(Norm(.log, vmin: 1, vmax: 1000)(0), -.infinity)
        XCTAssertEqual(Norm(.sqrt, vmin: 0, vmax: 100)(25), 0.5, accuracy: 1e-12)
        XCTAssertEqual(Norm(.sqrt, vmin: 0, vmax: 100)(-5), 0)
        // SymLogNorm(linthresh=1, vmin=-100, vmax=100): 0 maps to the middle, 10 to
        // (t(10) - t(-100)) / (2 t(100)) with t(x) = sign * (1/0.9 + log10|x|)
        let s = Norm(.symlog(linthresh: 1), vmin: -100, vmax: 100)
        XCTAssertEqual(s(0), 0.5, accuracy: 1e-12)
        let t = { (x: Double) in 1 / 0.9 + log10(x) }
        XCTAssertEqual(s(10), (t(10) + t(100)) / (2 * t(100)), accuracy: 1e-12)
        XCTAssertEqual(s(0.5), (0.5 / 0.9 + t(100)) / (2 * t(100)), accuracy: 1e-12)
        for x in [0.0, 0.1, 0.5, 0.9, 1] {
            XCTAssertEqual(s(s.inverse(x)), x, accuracy: 1e-9)
            let l = Norm(.log, vmin: 2, vmax: 5000)
            XCTAssertEqual(l(l.inverse(x)), x, accuracy: 1e-9)
        }
        XCTAssertEqual(Norm(.linear, vmin: 3, vmax: 3)(3), 0)
        XCTAssertTrue(Norm(.linear, vmin: 0, vmax: 1)(.nan).isNaN)
    }
}

final class MaskTests: XCTestCase {
    func testDetectorMasksAndStatistics() throws {
        // Pilatus: -1 gaps, -2 dead pixels; a hot pixel that percentiles leave out
        let p = try array([5, -1, 7, -2, 100, 6], [2, 3], .int32)
        let d = try ImageData(p)
        XCTAssertEqual(d.stats.count, 4)
        XCTAssertEqual(d.stats.masked, 2)
        XCTAssertEqual(d.stats.min, 5)
        XCTAssertEqual(d.stats.max, 100)
        XCTAssertTrue(d.values[1].isNaN && d.values[3].isNaN)
        // Eiger: the dtype's maximum is a gap
        let e = try array([1, 4294967295, 3, 2], [2, 2], .uint32)
        let de = try ImageData(e)
        XCTAssertEqual(de.stats.max, 3)
        XCTAssertEqual(de.stats.masked, 1)
        // a pixel mask, nonzero = masked
        let m = try ImageData(try array([1, 2, 3, 4], [2, 2]), mask: MaskRules(pixelMask: [0, 0, 0, 1]))
        XCTAssertEqual(m.stats.max, 3)
        XCTAssertThrowsError(try ImageData(try array([1, 2, 3, 4], [2, 2]), mask: MaskRules(pixelMask: [0, 1])))
        // NaN is masked in floats; negative floats are values
        let f = try ImageData(try array([.nan, -3, 2, 1], [2, 2]))
        XCTAssertEqual(f.stats.min, -3)
        XCTAssertEqual(f.stats.masked, 1)
    }

    func testPercentilesMatchNumPy() throws {
        // np.percentile(np.arange(1, 101), [0.5, 99.5]) == [1.495, 99.505]
        let ints = try ImageData(try array((1...100).map(Double.init), [10, 10], .int32))
        XCTAssertEqual(ints.percentile(0.5), 1.495, accuracy: 1e-9)
        XCTAssertEqual(ints.percentile(99.5), 99.505, accuracy: 1e-9)
        let floats = try ImageData(try array((1...100).map { Double($0) + 0.25 }, [10, 10]))
        XCTAssertEqual(floats.percentile(50), 50.75, accuracy: 1e-9)
        // the autoscale ignores masked pixels
        let masked = try ImageData(try array([1, 2, 3, -1, -1, -1], [2, 3], .int32))
        let l = masked.limits(.linear, autoscale: .minmax, vmin: nil, vmax: nil)
        XCTAssertEqual(l.0, 1); XCTAssertEqual(l.1, 3); XCTAssertNil(l.note)
    }

    func testIntegerHistogramPercentilesEqualSortedOnes() throws {
        // the integer path (one histogram) against the float path (a sorted copy)
        var g = SystemRandomNumberGenerator()
        let v = (0..<5000).map { _ in Double(Int.random(in: -3...2000, using: &g)) }
        let ints = try ImageData(try array(v, [50, 100], .int32))
        let floats = try ImageData(try array(v.map { $0 < 0 ? .nan : $0 }, [50, 100]))
        for (a, b) in [(0.5, 99.5), (1, 99), (0, 100), (37.3, 62.1)] {
            let x = ints.percentiles(a, b), y = floats.percentiles(a, b)
            XCTAssertEqual(x.0, y.0, accuracy: 1e-9); XCTAssertEqual(x.1, y.1, accuracy: 1e-9)
            let px = ints.percentiles(a, b, positiveOnly: true), py = floats.percentiles(a, b, positiveOnly: true)
            XCTAssertEqual(px.0, py.0, accuracy: 1e-9); XCTAssertEqual(px.1, py.1, accuracy: 1e-9)
        }
    }

    func testOddDataGiveNotesNotCrashes() throws {
        let allNaN = try ImageData(try array([.nan, .nan], [1, 2]))
        XCTAssertNotNil(allNaN.limits(.linear, autoscale: .minmax, vmin: nil, vmax: nil).note)
        let constant = try ImageData(try array([4, 4, 4, 4], [2, 2]))
        XCTAssertEqual(constant.limits(.linear, autoscale: .minmax, vmin: nil, vmax: nil).note, "constant value 4")
        let negative = try ImageData(try array([-4, -1, -2, -3], [2, 2]))
        XCTAssertNotNil(negative.limits(.log, autoscale: .minmax, vmin: nil, vmax: nil).note)
        XCTAssertThrowsError(try ImageData(try NDArray(zeros: [0, 3], dtype: .float64)))
        XCTAssertThrowsError(try ImageData(try NDArray(zeros: [3], dtype: .float64)))
    }
}

final class ReductionTests: XCTestCase {
    func testBinRangesReduceAndEnlarge() {
        // 10 unit bins onto 5 pixels: two bins per pixel
        let e = (0...10).map(Double.init)
        let r = binRanges(e, (0..<5).map { (Double($0) * 2, Double($0) * 2 + 2) })
        XCTAssertEqual(r.map { $0.0 }, [0, 2, 4, 6, 8])
        XCTAssertEqual(r.map { $0.1 }, [1, 3, 5, 7, 9])
        // 2 bins onto 4 pixels: each pixel shows the bin it lies in
        let big = binRanges([0, 1, 2], (0..<4).map { (Double($0) * 0.5, Double($0) * 0.5 + 0.5) })
        XCTAssertEqual(big.map { $0.0 }, [0, 0, 1, 1])
        XCTAssertEqual(big.map { $0.1 }, [0, 0, 1, 1])
        // outside the data, and decreasing edges
        XCTAssertEqual(binRanges([0, 1], [(2, 3)]).first!.0, -1)
        let down = binRanges([3, 2, 1, 0], [(0, 1), (2, 3)])
        XCTAssertEqual(down.map { $0.0 }, [2, 0])
    }

    func testMaxPreservingRasterKeepsASinglePeak() throws {
        // a 1000 x 1000 image of ones with one hot pixel, drawn on 50 x 50 pixels
        let a = try NDArray(zeros: [1000, 1000], dtype: .int32)
        try a.fill(.integer(1))
        try a.setValue(1000, at: [517, 333])
        let layer = try ImageLayer(try ImageData(a), colormap: Colormap.named("gray"), autoscale: .minmax)
        let x = AxisMap(lo: -0.5, hi: 999.5, log: false, p0: 0, p1: 50)
        let y = AxisMap(lo: -0.5, hi: 999.5, log: false, p0: 50, p1: 0)
        var buf = [UInt32](repeating: 0, count: 50 * 50)
        buf.withUnsafeMutableBytes { rasterize(layer, x: x, y: y, left: 0, top: 0, width: 50, height: 50, into: $0.baseAddress!, stride: 200) }
        let white = Colormap.named("gray")!.argb32[255], black = Colormap.named("gray")!.argb32[0]
        XCTAssertEqual(buf.filter { $0 == white }.count, 1)
        XCTAssertEqual(buf.filter { $0 == black }.count, 2499)
        // row 517 from the bottom (origin lower): pixel row 49 - 517/20 = 24, column 333/20 = 16
        XCTAssertEqual(buf[24 * 50 + 16], white)
    }

    func testNonUniformAxisDrawsBinsAtTheirWidth() throws {
        // two columns with edges 0, 1, 4: the second bin is three times as wide
        let a = try array([0, 1], [1, 2])
        let layer = try ImageLayer(try ImageData(a), x: [0, 1, 4], colormap: Colormap.named("gray"), autoscale: .minmax)
        let x = AxisMap(lo: 0, hi: 4, log: false, p0: 0, p1: 40)
        let y = AxisMap(lo: -0.5, hi: 0.5, log: false, p0: 1, p1: 0)
        var buf = [UInt32](repeating: 0, count: 40)
        buf.withUnsafeMutableBytes { rasterize(layer, x: x, y: y, left: 0, top: 0, width: 40, height: 1, into: $0.baseAddress!, stride: 160) }
        let white = Colormap.named("gray")!.argb32[255]
        XCTAssertEqual(buf.filter { $0 == white }.count, 30)
        XCTAssertEqual(buf[9], Colormap.named("gray")!.argb32[0])
    }
}

final class TickTests: XCTestCase {
    func testNiceSteps() {
        XCTAssertEqual(Ticks.linear(0, 10).values, [0, 2, 4, 6, 8, 10])
        XCTAssertEqual(Ticks.linear(0, 10).labels, ["0", "2", "4", "6", "8", "10"])
        XCTAssertEqual(Ticks.linear(-1, 1).labels, ["-1.0", "-0.5", "0.0", "0.5", "1.0"])
        XCTAssertEqual(Ticks.linear(0.13, 0.52).labels, ["0.15", "0.20", "0.25", "0.30", "0.35", "0.40", "0.45", "0.50"])
        let big = Ticks.linear(0, 3e6)
        XCTAssertEqual(big.exponent, 6)
        XCTAssertEqual(big.labels, ["0.0", "0.5", "1.0", "1.5", "2.0", "2.5", "3.0"])
        let small = Ticks.linear(0, 4e-5)
        XCTAssertEqual(small.exponent, -5)
        XCTAssertEqual(Ticks.linear(5, 5).values, [5])
    }

    func testLogTicks() {
        let t = Ticks.log(1, 1e4)
        XCTAssertEqual(t.values, [1, 10, 100, 1000, 10000])
        XCTAssertEqual(t.superscripts!, ["0", "1", "2", "3", "4"])
        let narrow = Ticks.log(3, 40)
        XCTAssertEqual(narrow.values, [5, 10, 20])
        XCTAssertEqual(narrow.labels, ["5", "10", "20"])
        XCTAssertEqual(Ticks.log(1, 60).values, [1, 2, 5, 10, 20, 50])
        let s = Ticks.symlog(-100, 1000, linthresh: 1)
        XCTAssertTrue(s.values.contains(0) && s.values.contains(1000) && s.values.contains(-100))
    }
}

final class FigureTests: XCTestCase {
    func testPNGBytesAndErrors() throws {
        let fig = try Figure(width: 200, height: 150)
        try fig.panel.add(PlotInput(signal: try array([1, 2, 3], [3])), PlotOptions())
        let png = try fig.pngData()
        XCTAssertEqual(Array(png.prefix(8)), [137, 80, 78, 71, 13, 10, 26, 10])
        let rgba = try fig.rgba()
        XCTAssertEqual(rgba.bytes.count, 200 * 150 * 4)
        fig.panel.logy = true
        fig.panel.lines = [try Line(y: [-1, -2])]
        XCTAssertThrowsError(try fig.pngData()) { XCTAssertTrue("\($0)".contains("no positive y values")) }
        XCTAssertThrowsError(try Line(x: [1, 2], y: [1]))
        XCTAssertThrowsError(try ImageLayer(try ImageData(try array([1, 2, 3, 4], [2, 2])), x: [1, 2, 3, 4, 5]))
        XCTAssertThrowsError(try ImageLayer(try ImageData(try array([1, 2, 3, 4], [2, 2])), x: [1, 3, 2]))
        XCTAssertThrowsError(try fig.save("/tmp/x.gif"))
        let stack = PlotInput(signal: try NDArray(zeros: [3, 4, 5], dtype: .int32))
        XCTAssertThrowsError(try Figure().panel.add(stack, PlotOptions())) { XCTAssertTrue("\($0)".contains("frame")) }
        var o = PlotOptions(); o.frame = [1]
        XCTAssertNoThrow(try Figure().panel.add(stack, o))
    }

    func testCountsGiveSqrtNErrorsAndGivenErrorsWin() throws {
        var inp = PlotInput(signal: try array([4, 9, 0], [3]))
        inp.counts = true
        inp.markers = true
        let p = Panel()
        try p.add(inp, PlotOptions())
        XCTAssertEqual(p.lines[0].yerr!, [2, 3, 0])
        XCTAssertEqual(p.lines[0].marker, .circle)
        XCTAssertFalse(p.lines[0].line)
        inp.errors = try array([0.5, 0.5, 0.5], [3])
        try p.add(inp, PlotOptions())
        XCTAssertEqual(p.lines[1].yerr!, [0.5, 0.5, 0.5])
        var o = PlotOptions(); o.errors = false
        try p.add(inp, o)
        XCTAssertNil(p.lines[2].yerr)
        // bin edges (n + 1 values) plot at the bins' centres
        var h = PlotInput(signal: try array([1, 2], [2]), axes: [[0, 2, 6]])
        h.squeeze = true
        try p.add(h, PlotOptions())
        XCTAssertEqual(p.lines[3].x, [1, 4])
    }

    func testProjectSumsARange() throws {
        let a = try array((0..<24).map(Double.init), [2, 3, 4])
        let p = try PlotInput(signal: a).project(axis: 0)
        XCTAssertEqual(p.signal.shape, [3, 4])
        XCTAssertEqual(try p.signal.value(at: [0, 0]), 12)
        let q = try PlotInput(signal: a).project(axis: 2, range: 1..<3)
        XCTAssertEqual(q.signal.shape, [2, 3])
        XCTAssertEqual(try q.signal.value(at: [1, 2]), 21 + 22)
        XCTAssertThrowsError(try PlotInput(signal: a).project(axis: 0, range: 2..<5))
    }
}
