import XCTest
import NDArray
@testable import Plot

/// ImageLayer tiles: what nxlua serve's web viewer paints.
final class ImageTileTests: XCTestCase {
    func testAReducedTileKeepsEachBlocksMaximumAndMasksStayBad() throws {
        let a = try NDArray(zeros: [8, 8], dtype: .int32)
        try a.setValue(9, at: [5, 2])    // one hot pixel in the block of rows 4-7, cols 0-3
        try a.setValue(-1, at: [0, 7])   // a Pilatus gap pixel: masked
        let layer = try ImageLayer(try ImageData(a), colormap: Colormap.named("gray")!, autoscale: .minmax)
        layer.origin = .upper
        let tile = try layer.tileARGB(width: 2, height: 2, x0: -0.5, x1: 7.5, y0: -0.5, y1: 7.5)
        let black: UInt32 = 0xFF00_0000, white: UInt32 = 0xFFFF_FFFF
        // row 0 of the tile: rows 0-3 (zeros, one masked pixel among them: the maximum of
        // the others wins); row 1: rows 4-7, whose left block holds the hot pixel
        XCTAssertEqual(tile, [black, black, white, black])
        // a window of the masked pixel alone: the bad colour
        let gap = try layer.tileARGB(width: 1, height: 1, x0: 6.5, x1: 7.5, y0: -0.5, y1: 0.5)
        let b = Colormap.badColour
        XCTAssertEqual(gap, [0xFF00_0000 | UInt32(b.0) << 16 | UInt32(b.1) << 8 | UInt32(b.2)])
        // origin lower: the same picture upside down
        layer.origin = .lower
        XCTAssertEqual(try layer.tileARGB(width: 2, height: 2, x0: -0.5, x1: 7.5, y0: -0.5, y1: 7.5), [white, black, black, black])
        XCTAssertThrowsError(try layer.tileARGB(width: 0, height: 2, x0: 0, x1: 1, y0: 0, y1: 1))
        XCTAssertThrowsError(try layer.tileARGB(width: 2, height: 2, x0: 1, x1: 1, y0: 0, y1: 1))
        let png = try layer.tilePNG(width: 2, height: 2, x0: -0.5, x1: 7.5, y0: -0.5, y1: 7.5)
        XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
    }
}
