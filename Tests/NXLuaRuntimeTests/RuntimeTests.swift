import XCTest
import CCBFShims
import CHDF5
import CHDF5Shims
import CTIFFShims
@testable import LuaBridge
@testable import NativeLibraries
@testable import NXLuaRuntime

/// The native libraries link through their shims, and the versions nxlua reports at run
/// time (dlopen) are the ones the shims were compiled and linked against.
final class NativeLinkTests: XCTestCase {
    func testHDF5LoadsThroughItsShim() throws {
        var why = [CChar](repeating: 0, count: 256)
        let api = try XCTUnwrap(nxh5_load(&why, why.count), String(cString: why))
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        _ = api.pointee.H5get_libversion(&major, &minor, &release)
        XCTAssertEqual(major, 1)
        XCTAssertGreaterThanOrEqual(minor, 10)
        var threadsafe: hbool_t = false
        _ = api.pointee.H5is_library_threadsafe(&threadsafe)
        XCTAssertTrue(threadsafe, "Debian's serial libhdf5 is built thread-safe")
        XCTAssertTrue(NativeLibraries.hdf5.version.hasPrefix("\(major).\(minor).\(release)"))
        XCTAssertGreaterThan(api.pointee.NATIVE_INT32, 0)
    }

    func testTIFFLoadsThroughItsShim() {
        var why = [CChar](repeating: 0, count: 512)
        guard let api = nxtiff_load(&why, why.count) else { return XCTFail(String(cString: why)) }
        let banner = String(cString: api.pointee.TIFFGetVersion()!)
        XCTAssertTrue(banner.contains(NativeLibraries.libtiff.version), banner)
    }

    func testCBFLoadsThroughItsShim() {
        var why = [CChar](repeating: 0, count: 512)
        XCTAssertEqual(nxcbf_load(&why, why.count), 1, String(cString: why))
        XCTAssertEqual(String(cString: nxcbf_api_version()), "CBFlib v0.9.7")
        XCTAssertEqual(NativeLibraries.cbflib.version, NXCBF_SONAME)
    }
}

/// The runtime nxlua scripts see: modules, help, the stdlib search path.
final class RuntimeTests: XCTestCase {
    func testCoreModuleAndHelpAreInstalled() throws {
        let rt = try Runtime()
        XCTAssertEqual(try rt.state.run("return type(help)"), ["function"], "scripts get the plain function")
        rt.installInteractiveHelp()
        let r = try rt.state.run("""
            return nxlua.version, getmetatable(help).__name, type(nxlua.sleep), package.loaded.nxlua == nxlua,
                   require('nxlua.help').text(nxlua.sleep)
            """)
        XCTAssertEqual(Array(r[0..<4]), [CoreModule.version, "help", "function", "true"])
        XCTAssertTrue(r[4].hasPrefix("nxlua.sleep(seconds)\n  waits; Ctrl-C interrupts the wait"), r[4])
    }

    func testLibrariesTableNamesEveryLibrary() throws {
        let rt = try Runtime()
        let r = try rt.state.run("local l = nxlua.libraries(); return l.Lua, l.HDF5 ~= nil, l.libtiff ~= nil, l.cbflib")
        XCTAssertEqual(r, ["5.4.4", "true", "true", "libcbf.so.1"])
    }

    func testStdlibIsFoundFromTheSourceTree() throws {
        // The test binary lives under .build/, inside the source tree holding stdlib/.
        let rt = try Runtime()
        XCTAssertNotNil(rt.stdlibDirectory)
        XCTAssertEqual(try rt.state.run("return require('nxlua.pretty').format({x = 1})"), ["{x = 1}"])
    }

    func testSleepRefusesBadDurations() throws {
        let rt = try Runtime()
        let r = try rt.state.run("return pcall(function() nxlua.sleep(0/0) end)")
        XCTAssertEqual(r[0], "false")
        XCTAssertTrue(r[1].contains("non-negative number of seconds expected"), r[1])
    }
}
