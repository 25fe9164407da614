import CLuaShims
import CHDF5Shims
import CTIFFShims
import CCBFShims
import CBLASShims
#if canImport(Glibc)
import Glibc
#endif

/// The native libraries nxlua builds on, with the versions found at run time.
///
/// Lua is linked into the executable. HDF5, libtiff and cbflib are opened here with
/// dlopen only when asked (`nxlua --version`, `nxlua.libraries()`): loading libhdf5 and its
/// dependency chain (curl, gnutls, krb5, ...) costs about 3 ms, more than everything else
/// nxlua does to start (docs/architecture.md, "Start-up"). The modules that use these
/// libraries open them the same way through their shims (`nxh5_load`, `nxtiff_load`,
/// `nxcbf_load`), whose headers are the one place naming each shared object.
public enum NativeLibraries {
    public struct Library: Sendable {
        public let name: String
        /// The version, or why it could not be read ("not found: ...").
        public let version: String
    }

    public static var lua: Library {
        let release = String(cString: nxl_lua_release())  // "Lua 5.4.4"
        return Library(name: "Lua", version: release.split(separator: " ").last.map(String.init) ?? release)
    }

    public static var hdf5: Library {
        // Through the shim, which sets the library up before its first call (its exit
        // handler in particular, see nxh5_note_failed_file_close): a first call from
        // here would have initialised HDF5 with its own.
        var why = [CChar](repeating: 0, count: 512)
        guard let h = nxh5_load(&why, why.count) else {
            return Library(name: "HDF5", version: "not found: " + String(cString: why))
        }
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        _ = h.pointee.H5get_libversion(&major, &minor, &release)
        var threadsafe: hbool_t = false
        _ = h.pointee.H5is_library_threadsafe(&threadsafe)
        return Library(name: "HDF5", version: "\(major).\(minor).\(release)" + (threadsafe ? " (thread-safe)" : ""))
    }

    public static var libtiff: Library {
        typealias Version = @convention(c) () -> UnsafePointer<CChar>
        return load("libtiff", soname: NXTIFF_SONAME) { handle in
            guard let v = dlsym(handle, "TIFFGetVersion") else { return nil }
            // "LIBTIFF, Version 4.5.0\nCopyright ..." -> "4.5.0"
            let banner = String(cString: unsafeBitCast(v, to: Version.self)())
            let first = banner.split(separator: "\n").first.map(String.init) ?? banner
            return first.split(separator: " ").last.map(String.init)
        }
    }

    public static var cbflib: Library {
        // cbflib has no version function (its headers' CBF_API_VERSION is checked by the
        // tests); report the library that loads.
        load("cbflib", soname: NXCBF_SONAME) { handle in
            dlsym(handle, "cbf_make_handle") == nil ? nil : NXCBF_SONAME
        }
    }

    public static var openblas: Library {
        // Optional: matrix products use nxlua's own kernel without it.
        typealias Config = @convention(c) () -> UnsafePointer<CChar>
        return load("OpenBLAS", soname: NXBLAS_SONAME) { handle in
            guard let c = dlsym(handle, "openblas_get_config") else { return nil }
            // "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64" -> "0.3.21"
            let words = String(cString: unsafeBitCast(c, to: Config.self)()).split(separator: " ")
            return words.count > 1 ? String(words[1]) : words.first.map(String.init)
        }
    }

    public static var all: [Library] { [lua, hdf5, libtiff, cbflib, openblas] }

    /// The libraries a stacker works with, for its files' provenance. Not OpenBLAS: loading
    /// it starts a thread that spins for ~0.1 s of CPU, taken from a stacker that just
    /// started or resumed on a busy machine.
    public static var stacking: [Library] { [lua, hdf5, libtiff, cbflib] }

    private static func load(_ name: String, soname: String, _ read: (UnsafeMutableRawPointer) -> String?) -> Library {
        guard let handle = dlopen(soname, RTLD_NOW | RTLD_GLOBAL) else {
            let why = dlerror().map { String(cString: $0) } ?? soname
            return Library(name: name, version: "not found: \(why)")
        }
        return Library(name: name, version: read(handle) ?? "unknown")
    }
}
