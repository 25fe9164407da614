// swift-tools-version:6.0
// nxlua: a Lua 5.4 host for NeXus/HDF5 data. See docs/architecture.md for the module map.
import PackageDescription

let package = Package(
    name: "nxlua",
    products: [
        .executable(name: "nxlua", targets: ["nxlua"]),
        .executable(name: "nxlua-bench", targets: ["nxlua-bench"]),
        .library(name: "LuaBridge", targets: ["LuaBridge"]),
    ],
    targets: [
        // System libraries (Debian -dev packages; scripts/setup installs them).
        .systemLibrary(name: "CLua", pkgConfig: "lua5.4", providers: [.apt(["liblua5.4-dev"])]),
        // HDF5 declarations only: CHDF5Shims opens libhdf5 with dlopen (start-up, see its header).
        .systemLibrary(name: "CHDF5", providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CEdit", pkgConfig: "libedit", providers: [.apt(["libedit-dev"])]),
        // libtiff declarations only: CTIFFShims opens libtiff with dlopen (start-up, see its header).
        .systemLibrary(name: "CTIFF", providers: [.apt(["libtiff-dev"])]),

        // One tiny C shim per library for what Swift cannot import (macros, variadics, longjmp).
        .target(name: "CLuaShims", dependencies: ["CLua"]),
        .target(name: "CHDF5Shims", dependencies: ["CHDF5"], linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "CEditShims", dependencies: ["CEdit"]),
        .target(name: "CTIFFShims", dependencies: ["CTIFF"], linkerSettings: [.linkedLibrary("dl")]),
        // cbflib (libcbf-dev) ships no .pc file and its cbf.h includes hdf5.h: only the shim's C
        // file sees cbflib's headers, with HDF5's serial folder on its include path (the folder
        // CHDF5 names too); linking nothing, it opens libcbf with dlopen (see its header).
        .target(name: "CCBFShims", cSettings: [.unsafeFlags(["-I/usr/include/hdf5/serial"])],
                linkerSettings: [.linkedLibrary("dl")]),

        // Safe Swift API over lua_State: no Lua error ever longjmps across a Swift frame.
        .target(name: "LuaBridge", dependencies: ["CLua", "CLuaShims"]),
        // The N-dimensional array engine: dtypes, strided views, kernels (no Lua inside).
        .target(name: "NDArray"),
        // The NeXus tree over HDF5: a low layer mirroring HDF5 (Sources/NeXus/HDF5) and the
        // tree users navigate (Sources/NeXus/Tree). No Lua inside.
        .target(name: "NeXus", dependencies: ["CHDF5", "CHDF5Shims", "NDArray"]),
        // Detector frames: CBF (native byte-offset reader, cbflib for the rest) and TIFF
        // (libtiff) readers, the Pilatus header, writers for tests and demos. No Lua inside.
        .target(name: "Detector", dependencies: ["NDArray", "CTIFF", "CTIFFShims", "CCBFShims"]),
        // Detector frames into growing NeXus files: folder watching, worker threads that
        // decode and compress, one HDF5 writer, resumable commits. No Lua inside.
        .target(name: "Stacker", dependencies: ["Detector", "NeXus", "NDArray", "TerminalProgress"]),
        // Line editing and history over libedit, no Lua inside.
        .target(name: "LineEdit", dependencies: ["CEdit", "CEditShims"]),
        // Versions of the native libraries, read with dlopen so that start-up never pays
        // for libhdf5's dependency chain (docs/architecture.md, "Start-up").
        .target(name: "NativeLibraries", dependencies: ["CLuaShims", "CHDF5Shims", "CTIFFShims", "CCBFShims"]),
        // Progress bars on stderr for long work (quiet when piped or under CI).
        .target(name: "TerminalProgress"),
        // The Lua modules nxlua provides (bindings only; cores live in their own modules).
        .target(name: "NXLuaRuntime", dependencies: ["LuaBridge", "NativeLibraries", "NDArray", "NeXus", "Detector", "Stacker", "TerminalProgress"]),
        // The executable: CLI, REPL, script runner.
        // The Swift runtime is linked statically: 1.2 ms less start-up (docs/architecture.md).
        .executableTarget(name: "nxlua", dependencies: [
            "NXLuaRuntime", "LuaBridge", "LineEdit", "Stacker", "NeXus",
        ],
                          linkerSettings: [.unsafeFlags(["-static-stdlib"], .when(configuration: .release))]),

        // Swift-side micro-benchmarks for scripts/bench (not part of the product).
        .target(name: "CBenchmarkShims", dependencies: ["CLua"]),
        .executableTarget(name: "nxlua-bench", dependencies: ["LuaBridge", "CLua", "CBenchmarkShims", "NDArray"]),

        .testTarget(name: "LuaBridgeTests", dependencies: ["LuaBridge"]),
        .testTarget(name: "NDArrayTests", dependencies: ["NDArray"]),
        .testTarget(name: "NeXusTests", dependencies: ["NeXus", "NDArray"]),
        .testTarget(name: "StackerTests", dependencies: ["Stacker", "NeXus", "NDArray", "Detector"]),
        .testTarget(name: "DetectorTests", dependencies: ["Detector", "NDArray", "CCBFShims"]),
        .testTarget(name: "NXLuaRuntimeTests", dependencies: [
            "NXLuaRuntime", "LuaBridge", "NativeLibraries", "CHDF5", "CHDF5Shims", "CTIFFShims", "CCBFShims",
        ]),
    ]
)
