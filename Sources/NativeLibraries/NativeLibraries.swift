import CLuaShims
import CHDF5Shims
import CTIFFShims
import CCBFShims

/// The native libraries nxlua links, with the versions loaded at run time. `nxlua
/// --version` prints them; asking each library proves it links and loads.
public enum NativeLibraries {
    public struct Library: Sendable {
        public let name: String
        public let version: String
    }

    public static var lua: Library {
        let release = String(cString: nxl_lua_release())  // "Lua 5.4.4"
        return Library(name: "Lua", version: release.split(separator: " ").last.map(String.init) ?? release)
    }

    public static var hdf5: Library {
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        nxh5_version(&major, &minor, &release)
        let ts = nxh5_is_threadsafe() != 0 ? " (thread-safe)" : ""
        return Library(name: "HDF5", version: "\(major).\(minor).\(release)\(ts)")
    }

    public static var libtiff: Library {
        // "LIBTIFF, Version 4.5.0\nCopyright ..." -> "4.5.0"
        let banner = String(cString: nxtiff_version())
        let firstLine = banner.split(separator: "\n").first.map(String.init) ?? banner
        let version = firstLine.split(separator: " ").last.map(String.init) ?? firstLine
        return Library(name: "libtiff", version: version)
    }

    public static var cbflib: Library {
        let v = String(cString: nxcbf_api_version())  // "CBFlib v0.9.7"
        let version = v.split(separator: " ").last.map { $0.hasPrefix("v") ? String($0.dropFirst()) : String($0) }
        return Library(name: "cbflib", version: version ?? v)
    }

    public static var all: [Library] { [lua, hdf5, libtiff, cbflib] }
}
