// swift-tools-version:6.0
// nxlua: a Lua 5.4 host for NeXus/HDF5 data. See docs/architecture.md for the module map.
import PackageDescription

let package = Package(
    name: "nxlua",
    products: [
        .executable(name: "nxlua", targets: ["nxlua"]),
        .library(name: "LuaBridge", targets: ["LuaBridge"]),
    ],
    targets: [
        // System libraries (Debian -dev packages; scripts/setup installs them).
        .systemLibrary(name: "CLua", pkgConfig: "lua5.4", providers: [.apt(["liblua5.4-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5-serial", providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CEdit", pkgConfig: "libedit", providers: [.apt(["libedit-dev"])]),
        .systemLibrary(name: "CTIFF", pkgConfig: "libtiff-4", providers: [.apt(["libtiff-dev"])]),
        // cbflib ships no .pc file; its cbf.h includes hdf5.h, so it borrows HDF5's flags.
        .systemLibrary(name: "CCBF", pkgConfig: "hdf5-serial", providers: [.apt(["libcbf-dev", "libhdf5-dev"])]),

        // One tiny C shim per library for what Swift cannot import (macros, variadics, longjmp).
        .target(name: "CLuaShims", dependencies: ["CLua"]),
        .target(name: "CHDF5Shims", dependencies: ["CHDF5"]),
        .target(name: "CEditShims", dependencies: ["CEdit"]),
        .target(name: "CTIFFShims", dependencies: ["CTIFF"]),
        .target(name: "CCBFShims", dependencies: ["CCBF"], linkerSettings: [.linkedLibrary("cbf")]),

        // Safe Swift API over lua_State: no Lua error ever longjmps across a Swift frame.
        .target(name: "LuaBridge", dependencies: ["CLua", "CLuaShims"]),
        // Line editing and history over libedit, no Lua inside.
        .target(name: "LineEdit", dependencies: ["CEdit", "CEditShims"]),
        // Versions of the native libraries nxlua links (proves each one links and loads).
        .target(name: "NativeLibraries", dependencies: ["CLuaShims", "CHDF5Shims", "CTIFFShims", "CCBFShims"]),
        // The Lua modules nxlua provides (bindings only; cores live in their own modules).
        .target(name: "NXLuaRuntime", dependencies: ["LuaBridge", "NativeLibraries"]),
        // The executable: CLI, REPL, script runner.
        .executableTarget(name: "nxlua", dependencies: ["NXLuaRuntime", "LuaBridge", "LineEdit"]),

        .testTarget(name: "LuaBridgeTests", dependencies: ["LuaBridge"]),
        .testTarget(name: "NXLuaRuntimeTests", dependencies: ["NXLuaRuntime", "LuaBridge", "NativeLibraries"]),
    ]
)
