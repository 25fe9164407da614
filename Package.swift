// swift-tools-version:6.1
// nxlua: a Lua 5.4 host for NeXus/HDF5 data. See docs/architecture.md for the module map.
import PackageDescription

let package = Package(
    name: "nxlua",
    products: [
        .executable(name: "nxlua", targets: ["nxlua"]),
        .executable(name: "nxlua-bench", targets: ["nxlua-bench"]),
        .library(name: "LuaBridge", targets: ["LuaBridge"]),
    ],
    dependencies: [
        // nxlua serve (Sources/RemoteServer): HTTP server, Basic auth with bcrypt, TLS, gzip, logs.
        // No traits: without FullFoundation, Hummingbird needs only FoundationEssentials, and the
        // statically linked release binary needs no ICU (and starts as fast as before).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // Hummingbird's own lifecycle: a waiting request ends when the server stops
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio", from: "1.5.0"),
        // nx.remote (Sources/RemoteClient): HTTP client on the same SwiftNIO/NIOSSL stack.
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        // The event journal of beamline macros (Sources/Events): SQLite in WAL mode.
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        // The catalog's PostgreSQL engine (Sources/Catalog), for a postgres:// URL.
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        // Macro content hashes (SHA-256) for provenance (Sources/Macros).
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
    ],
    targets: [
        // System libraries (Debian -dev packages; scripts/setup installs them).
        // No pkgConfig: lua5.4.pc's "-L/usr/lib/x86_64-linux-gnu" would come first on the link
        // line and make the release link take libsqlite3.so over the archive in
        // .build/static-libs (start-up, docs/architecture.md); the headers are named by path.
        .systemLibrary(name: "CLua", providers: [.apt(["liblua5.4-dev"])]),
        // HDF5 declarations only: CHDF5Shims opens libhdf5 with dlopen (start-up, see its header).
        .systemLibrary(name: "CHDF5", providers: [.apt(["libhdf5-dev"])]),
        // libedit declarations only: CEditShims opens libedit with dlopen for the first line
        // editor (start-up, see its C file).
        .systemLibrary(name: "CEdit", providers: [.apt(["libedit-dev"])]),
        // libtiff declarations only: CTIFFShims opens libtiff with dlopen (start-up, see its header).
        .systemLibrary(name: "CTIFF", providers: [.apt(["libtiff-dev"])]),
        // cairo declarations only: CCairoShims opens libcairo with dlopen when the first
        // figure is drawn (start-up, see its header).
        .systemLibrary(name: "CCairo", providers: [.apt(["libcairo2-dev"])]),

        // One tiny C shim per library for what Swift cannot import (macros, variadics, longjmp).
        .target(name: "CLuaShims", dependencies: ["CLua"]),
        .target(name: "CHDF5Shims", dependencies: ["CHDF5"], linkerSettings: [.linkedLibrary("dl")]),
        // Per-thread scheduling (nice values of single threads: gettid is not imported).
        .target(name: "CProcessShims"),
        .target(name: "CEditShims", dependencies: ["CEdit"],
                linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "CTIFFShims", dependencies: ["CTIFF"], linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "CCairoShims", dependencies: ["CCairo"], linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("z")]),
        // cbflib (libcbf-dev) ships no .pc file and its cbf.h includes hdf5.h: only the shim's C
        // file sees cbflib's headers, with HDF5's serial folder on its include path (the folder
        // CHDF5 names too); linking nothing, it opens libcbf with dlopen (see its header).
        .target(name: "CCBFShims", dependencies: ["CCPUFeatures"], cSettings: [.unsafeFlags(["-I/usr/include/hdf5/serial"])],
                linkerSettings: [.linkedLibrary("dl")]),
        // libcminpack (Levenberg-Marquardt) opened with dlopen for the crystal refinement.
        .target(name: "CMinpackShims", linkerSettings: [.linkedLibrary("dl")]),
        // FFTW3 (3-D DFTs of the crystal module's PDF), opened with dlopen on first use.
        .target(name: "CFFTWShims", linkerSettings: [.linkedLibrary("dl")]),
        // Bitshuffle+LZ4 chunks in the HDF5 plugin's format with an AVX2 bit transpose
        // (the stacker's hot path); liblz4 opened with dlopen.
        .target(name: "CBitshuffle", dependencies: ["CCPUFeatures"], linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "CCPUFeatures"),
        // OpenBLAS (cblas_dgemm/sgemm) for large float matrix products, opened with dlopen
        // when installed; NDArray's own kernel otherwise.
        .target(name: "CBLASShims", linkerSettings: [.linkedLibrary("dl")]),

        // Safe Swift API over lua_State: no Lua error ever longjmps across a Swift frame.
        .target(name: "LuaBridge", dependencies: ["CLua", "CLuaShims"]),
        // The N-dimensional array engine: dtypes, strided views, kernels (no Lua inside).
        .target(name: "NDArray", dependencies: ["CBLASShims"]),
        // The NeXus tree over HDF5: a low layer mirroring HDF5 (Sources/NeXus/HDF5) and the
        // tree users navigate (Sources/NeXus/Tree). No Lua inside.
        .target(name: "NeXus", dependencies: ["CHDF5", "CHDF5Shims", "CBitshuffle", "NDArray"]),
        // Detector frames: CBF (native byte-offset reader, cbflib for the rest) and TIFF
        // (libtiff) readers, the Pilatus header, writers for tests and demos. No Lua inside.
        .target(name: "Detector", dependencies: ["NDArray", "CTIFF", "CTIFFShims", "CCBFShims"]),
        // Detector frames into growing NeXus files: folder watching, worker threads that
        // decode and compress, one HDF5 writer, resumable commits. No Lua inside.
        .target(name: "Stacker", dependencies: ["Detector", "NeXus", "NDArray", "TerminalProgress", "FolderListing", "SpecFile"]),
        // Figures drawn with cairo (PNG, SVG, PDF, RGBA): colormaps, norms, masks, ticks,
        // images reduced to the output's pixels before colour mapping. No Lua inside.
        .target(name: "Plot", dependencies: ["NDArray", "CCairo", "CCairoShims"]),
        // Line editing and history over libedit, no Lua inside.
        .target(name: "LineEdit", dependencies: ["CEdit", "CEditShims"]),
        // Versions of the native libraries, read with dlopen so that start-up never pays
        // for libhdf5's dependency chain (docs/architecture.md, "Start-up").
        .target(name: "NativeLibraries", dependencies: ["CLuaShims", "CHDF5Shims", "CTIFFShims", "CCBFShims", "CBLASShims"]),
        // Progress bars on stderr for long work (quiet when piped or under CI).
        .target(name: "TerminalProgress"),
        // The names in a folder (readdir), for the stacker, nxlua.listdir and nxlua serve.
        .target(name: "FolderListing"),
        // Pictures in the terminal: kitty graphics, iTerm2 images, sixel (own encoder) or
        // Unicode half blocks, chosen from the environment (docs/terminal-graphics.md). No Lua inside.
        .target(name: "TerminalGraphics"),
        // The web viewer's HTML, CSS and ES modules, compiled into the binary (no files
        // beside it); nxlua serve serves them (docs/viewer.md).
        .target(name: "ViewerAssets", resources: [
            .embedInCode("web/index.html"), .embedInCode("web/viewer.css"), .embedInCode("web/app.js"),
            .embedInCode("web/api.js"), .embedInCode("web/tree.js"), .embedInCode("web/image.js"),
            .embedInCode("web/line.js"),
        ]),
        // `nxlua serve`: the read-only HDF REST API (HSDS's protocol, h5pyd's client) over
        // the files of a folder. No Lua inside: remote evaluation goes through the
        // RemoteEvaluator protocol, which NXLuaRuntime's sandbox implements.
        .target(name: "RemoteServer", dependencies: [
            "NeXus", "NDArray", "Events", "FolderListing", "Plot", "ViewerAssets", "Catalog", "CProcessShims",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "HummingbirdTLS", package: "hummingbird"),
            .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CompressNIO", package: "compress-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // nx.remote: the HDF REST client (nxlua serve or HSDS) and the read-only remote tree
        // that shares the local tree's text, NXdata rules and streaming reductions
        // (NeXus's NXReadableNode protocols). No Lua inside. JSON comes from RemoteServer.
        .target(name: "RemoteClient", dependencies: [
            "NeXus", "NDArray", "RemoteServer",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        // Scan events and their durable journal (SQLite WAL through GRDB), the sink
        // interface a message-bus bridge would implement, the stacker's event emitter.
        // No Lua inside.
        .target(name: "Events", dependencies: ["Stacker", "NeXus", "NDArray", "PostgresLink", .product(name: "GRDB", package: "GRDB.swift"),
                                              .product(name: "PostgresNIO", package: "postgres-nio")]),
        // Reaching PostgreSQL (a postgres:// URL) for the catalog and the journal: the URL,
        // connecting with clear errors, synchronous calls that Ctrl-C can end (NDArray's
        // Interruption: the calling thread's stop check).
        .target(name: "PostgresLink", dependencies: ["NDArray", .product(name: "PostgresNIO", package: "postgres-nio"),
                                                    .product(name: "Logging", package: "swift-log")]),
        // The catalog (docs/catalog.md): harvest NeXus files through a field mapping, the query
        // language compiled to SQL, SQLite (WAL, FTS5) and PostgreSQL stores. No Lua inside.
        .target(name: "Catalog", dependencies: ["NeXus", "NDArray", "FolderListing", "PostgresLink", "SpecFile", .product(name: "GRDB", package: "GRDB.swift"),
                                               .product(name: "PostgresNIO", package: "postgres-nio"),
                                               .product(name: "Crypto", package: "swift-crypto")]),
                // Single-crystal analysis: the scan geometry (pixel -> Q -> hkl), a crystal simulator,
        // streaming frame statistics and 3-D peak search, in NXRefine's conventions. No Lua inside.
        .target(name: "Crystal", dependencies: ["NDArray", "NeXus", "Detector", "CMinpackShims", "CFFTWShims"]),
        // SPEC data files (scans, columns straight into arrays, positions, metadata) and their
        // conversion to NeXus in spec2nexus's layout. No Lua inside.
        .target(name: "SpecFile", dependencies: ["NDArray", "NeXus"]),
        // Neutron event data (NXevent_data): banks read lazily, histograms streamed over
        // the file in blocks by worker threads (pixel x tof, spectra, detector images). No Lua inside.
        .target(name: "NeutronEvents", dependencies: ["NDArray", "NeXus", "CEventKernels"]),
        // The event histogram's inner loops: cells listed per cache slice, AVX2 listing.
        .target(name: "CEventKernels", dependencies: ["CCPUFeatures"]),
        // The Lua modules nxlua provides (bindings only; cores live in their own modules).
        .target(name: "NXLuaRuntime", dependencies: ["LuaBridge", "NativeLibraries", "NDArray", "NeXus", "Detector", "Stacker", "TerminalProgress", "RemoteServer", "RemoteClient", "Events", "Plot", "FolderListing", "Catalog", "Crystal", "SpecFile", "NeutronEvents"]),
        // `nxlua macros`: one worker thread and one Lua state per macro file, fed from the
        // journal with durable cursors, limits, failure counting and live reload.
        .target(name: "Macros", dependencies: ["Events", "NXLuaRuntime", "LuaBridge", "NDArray", "NeXus", "CProcessShims",
                                               .product(name: "Crypto", package: "swift-crypto")]),
        // The executable: CLI, REPL, script runner.
        // The release build links the Swift runtime and Foundation (which the HTTP stack
        // needs) statically: scripts/setup builds with --static-swift-stdlib, which, unlike
        // a bare -static-stdlib linker flag, also links Foundation's own static libraries
        // (docs/architecture.md, "Start-up").
        .executableTarget(name: "nxlua", dependencies: [
            "NXLuaRuntime", "LuaBridge", "LineEdit", "Stacker", "NeXus", "RemoteServer", "Events", "Macros",
            "Plot", "TerminalGraphics", "Catalog", "TerminalProgress", "FolderListing", "SpecFile", "CProcessShims",
        ], exclude: ["exports.map", "startup.order"], linkerSettings: [
            // Release: start-up and size (docs/architecture.md, "Start-up"). lld packs the
            // 140,000 relative relocations of a position-independent executable (RELR:
            // the loader's share of start-up went from 11.8 to 2.3 M cycles); the version
            // script keeps the executable's own ~45,800 Swift symbols out of the dynamic
            // symbol table (the Swift runtime's start-up scanned them); --strip-all leaves
            // the ~90 MB of DWARF and the symbol table out (212 MB -> 85 MB). libstdc++ (the
            // Swift runtime's) is linked statically when scripts/setup has put its archive in
            // .build/static-libs (found before the shared one): the loader no longer binds its
            // 1,736 symbols at every start (16.0 -> 13.2 M instructions for -e ''). Sanitized
            // (debug) builds do without all three: ASan's interceptors must stay exported.
            // --no-pie: a position-dependent executable needs no relocation at load, so the
            // loader no longer writes (and the kernel no longer copies) each of the ~340
            // pages of Swift metadata in .data.rel.ro: 793 -> 306 page faults and 3.3 ->
            // 2.2 ms for -e ''. The price is a fixed address for the executable's own image
            // (libraries, heap and stack stay randomised), as Go binaries and Debian's own
            // python3 long were built; docs/architecture.md, "Start-up".
            // --symbol-ordering-file: the functions and data a launch touches, listed by
            // scripts/startup-order, placed together (182 instead of 255 page faults).
            .unsafeFlags(["-use-ld=lld", "-Xlinker", "--no-pie", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
                          "-Xlinker", "--version-script=Sources/nxlua/exports.map", "-Xlinker", "--strip-all",
                          "-Xlinker", "--symbol-ordering-file=Sources/nxlua/startup.order", "-Xlinker", "--no-warn-symbol-ordering",
                          "-L.build/static-libs", "-Xclang-linker", "-static-libgcc"],
                         .when(configuration: .release)),
        ]),

        // Swift-side micro-benchmarks for scripts/bench (not part of the product).
        .target(name: "CBenchmarkShims", dependencies: ["CLua"]),
        .executableTarget(name: "nxlua-bench", dependencies: ["LuaBridge", "CLua", "CBenchmarkShims", "NDArray", "NeXus", "Events", "Catalog"]),

        .testTarget(name: "LuaBridgeTests", dependencies: ["LuaBridge"]),
        .testTarget(name: "NDArrayTests", dependencies: ["NDArray"]),
        .testTarget(name: "NeXusTests", dependencies: ["NeXus", "NDArray"]),
        .testTarget(name: "StackerTests", dependencies: ["Stacker", "NeXus", "NDArray", "Detector", "CBitshuffle", "CHDF5", "CHDF5Shims"]),
        .testTarget(name: "DetectorTests", dependencies: ["Detector", "NDArray", "CCBFShims"]),
        .testTarget(name: "RemoteServerTests", dependencies: ["RemoteServer", "NeXus", "NDArray"]),
        .testTarget(name: "RemoteClientTests", dependencies: ["RemoteClient", "NeXus", "NDArray"]),
        .testTarget(name: "EventsTests", dependencies: ["Events"]),
        .testTarget(name: "CatalogTests", dependencies: ["Catalog", "NeXus"]),
        .testTarget(name: "TerminalGraphicsTests", dependencies: ["TerminalGraphics"]),
        .testTarget(name: "CrystalTests", dependencies: ["Crystal", "NeXus", "NDArray"]),
        .testTarget(name: "PlotTests", dependencies: ["Plot", "NDArray"]),
        .testTarget(name: "SpecFileTests", dependencies: ["SpecFile", "NDArray", "NeXus"]),
        .testTarget(name: "NXLuaRuntimeTests", dependencies: [
            "NXLuaRuntime", "LuaBridge", "NativeLibraries", "CHDF5", "CHDF5Shims", "CTIFFShims", "CCBFShims",
        ]),
    ]
)
