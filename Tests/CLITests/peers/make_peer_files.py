"""Writes the HDF5/NeXus files of the interop tests with the Python peers (h5py, nexusformat).

    python make_peer_files.py OUTDIR

Every file stays small (well under 1 MB). The values are the ones test_nexus_interop.py
expects nxlua to read back, so change both together. Filters from the optional
`hdf5plugin` package (LZ4, bitshuffle+LZ4, blosc) are written only when it imports.
"""
import os
import pathlib
import sys

import h5py
import numpy as np
from nexusformat.nexus import (NXdata, NXdetector, NXentry, NXfield, NXinstrument, NXmonitor,
                               NXroot, NXsample)

try:
    import hdf5plugin
except ImportError:  # optional: the plugin datasets are skipped
    hdf5plugin = None

UTF8_TEXT = "Ångström µm – ü"  # non-ASCII in 1, 2 and 3 UTF-8 bytes

# dtype -> values: integer extremes that fit Lua integers, floats that Lua prints exactly.
NUMERIC = {
    "int8": [-128, 0, 127],
    "int16": [-32768, 0, 32767],
    "int32": [-2147483648, 0, 2147483647],
    "int64": [-9223372036854775808, 0, 9223372036854775807],
    "uint8": [0, 1, 255],
    "uint16": [0, 1, 65535],
    "uint32": [0, 1, 4294967295],
    "uint64": [0, 1, 9223372036854775807],  # 2**64-1 does not fit a Lua integer
    "float32": [0.5, -1.25, 1024.0],
    "float64": [0.1, -2.5, 1e300],
}


def fixed_utf8(text, size):
    """A fixed-length UTF-8 string value (h5py needs the bytes for fixed length)."""
    return np.array(text.encode("utf-8"), dtype=h5py.string_dtype("utf-8", size))


def fixed_string_dataset(group, name, value, strpad, size=16):
    """A scalar fixed-length ASCII string dataset with the given HDF5 padding."""
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(size)
    tid.set_strpad(strpad)
    dsid = h5py.h5d.create(group.id, name.encode(), tid, h5py.h5s.create(h5py.h5s.SCALAR))
    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(value, dtype=f"S{size}"))


def write_types(path):
    with h5py.File(path, "w") as f:
        s = f.create_group("strings")
        # Fixed length, NUL-padded: S16 holding "abc" must read back as "abc".
        s["fixed_ascii"] = np.bytes_(b"fixed ascii")
        s.create_dataset("fixed_padded", data=np.array(b"abc", dtype="S16"))
        s.create_dataset("fixed_utf8", data=fixed_utf8(UTF8_TEXT, 40))
        # The C and Fortran NeXus APIs pad with a terminating NUL or with spaces.
        fixed_string_dataset(s, "fixed_nullterm", b"nullterm", h5py.h5t.STR_NULLTERM)
        fixed_string_dataset(s, "fixed_spacepad", b"spaces", h5py.h5t.STR_SPACEPAD)
        s.create_dataset("vlen_ascii", data="vlen ascii", dtype=h5py.string_dtype("ascii"))
        s["vlen_utf8"] = UTF8_TEXT  # h5py's default for str: variable-length UTF-8
        s["fixed_ascii_array"] = np.array([b"a", b"bb", b"ccc"], dtype="S4")
        s.create_dataset("fixed_utf8_array", data=np.array(
            [t.encode("utf-8") for t in ("α", "βb", "ccc")], dtype=h5py.string_dtype("utf-8", 8)))
        s.create_dataset("vlen_ascii_array", data=["x", "yy", "zzz"],
                         dtype=h5py.string_dtype("ascii"))
        s.create_dataset("vlen_utf8_array", data=["µ", UTF8_TEXT, ""],
                         dtype=h5py.string_dtype("utf-8"))

        a = f.create_group("attributes")
        target = a.create_dataset("target", data=np.arange(3, dtype="int32"))
        for obj in (a, target):
            obj.attrs["fixed_string"] = np.bytes_(b"fixed")
            obj.attrs["vlen_string"] = UTF8_TEXT
            obj.attrs["float"] = 2.5
            obj.attrs["float32"] = np.float32(-0.75)
            obj.attrs["int"] = np.int64(42)
            obj.attrs["int_array"] = np.array([1, 2, 3], dtype="int32")
            obj.attrs["float_array"] = np.array([0.5, 1.5])
            obj.attrs["bool"] = np.bool_(True)
            obj.attrs["bool_false"] = np.bool_(False)
            obj.attrs["string_array"] = ["one", "two"]
        target.attrs["units"] = "mm"

        b = f.create_group("bools")
        b["flags"] = np.array([True, False, True])  # enum int8 {FALSE, TRUE}
        b["scalar"] = np.bool_(True)

        n = f.create_group("numbers")
        for name, values in NUMERIC.items():
            n.create_dataset(name, data=np.array(values, dtype=name))
        n.create_dataset("int32_be", data=np.array([1, -2, 300000], dtype=">i4"))
        n.create_dataset("float64_be", data=np.array([1.5, -2.25, 1e-300], dtype=">f8"))
        n.create_dataset("uint16_be", data=np.array([1, 2, 65535], dtype=">u2"))
        n["matrix"] = np.arange(12, dtype="int32").reshape(3, 4)

        sc = f.create_group("scalars")
        sc["int"] = np.int32(42)
        sc["float"] = np.float64(3.25)
        sc["int64"] = np.int64(-9007199254740993)  # not exact as a double

        f.create_dataset("empty", shape=(0,), dtype="float64")
        f.create_dataset("compound", data=np.array(
            [(1, 0.5), (2, 1.5), (3, -2.0)], dtype=[("x", "<i4"), ("y", "<f8")]))

        o = f.create_group("order")  # untracked: name order
        for name in ("b", "c", "a"):
            o[name] = 0
        t = f.create_group("tracked", track_order=True)  # creation order
        for name in ("b", "c", "a"):
            t[name] = 0


def write_links(path, ext_name):
    with h5py.File(pathlib.Path(path).parent / ext_name, "w") as f:
        f["data/values"] = np.array([10, 20, 30], dtype="int32")
    with h5py.File(path, "w") as f:
        f["entry/data/counts"] = np.arange(10, dtype="int32")
        f["entry/hard"] = f["entry/data/counts"]
        f["entry/soft"] = h5py.SoftLink("/entry/data/counts")
        f["entry/external"] = h5py.ExternalLink(ext_name, "/data/values")  # relative


def write_vds(folder):
    folder = pathlib.Path(folder)
    for i in range(3):
        with h5py.File(folder / f"vds_src_{i}.h5", "w") as f:
            f["data"] = np.arange(4, dtype="int32") + 10 * i
    for name, sources in (("vds.h5", ("vds_src_0.h5", "vds_src_1.h5")),
                          ("vds_missing.h5", ("vds_src_0.h5", "vds_src_2.h5"))):
        layout = h5py.VirtualLayout(shape=(2, 4), dtype="int32")
        for i, src in enumerate(sources):
            layout[i] = h5py.VirtualSource(src, "data", shape=(4,))  # relative file name
        with h5py.File(folder / name, "w") as f:
            f.create_virtual_dataset("stack", layout, fillvalue=-1)
    os.remove(folder / "vds_src_2.h5")  # vds_missing.h5 reads fill values for row 1


def write_compressed(path):
    data = np.arange(1000, dtype="int32").reshape(10, 100)
    with h5py.File(path, "w") as f:
        f.create_dataset("gzip", data=data, chunks=(1, 100), compression="gzip",
                         compression_opts=4)
        f.create_dataset("gzip_shuffle", data=data, chunks=(1, 100), compression="gzip",
                         shuffle=True)
        f.create_dataset("lzf", data=data, chunks=(1, 100), compression="lzf")
        if hdf5plugin is not None:
            for name, flt in (("lz4", hdf5plugin.LZ4()),
                              ("bshuf", hdf5plugin.Bitshuffle(cname="lz4")),
                              ("blosc", hdf5plugin.Blosc(cname="lz4", clevel=5,
                                                         shuffle=hdf5plugin.Blosc.SHUFFLE))):
                f.create_dataset(name, data=data, chunks=(1, 100), **flt)


def write_nexus(path):
    """A NeXus file as nexusformat writes it: NXdata whose signal is a hard link (with
    @target) to the detector's 2000-element field, two axes with units, @default chain."""
    root = NXroot()
    root.entry = NXentry(title="peer scan")
    entry = root.entry
    entry.instrument = NXinstrument()
    entry.instrument.detector = NXdetector(
        NXfield(np.arange(2000, dtype=np.int32).reshape(20, 100), name="counts",
                units="counts"),
        distance=NXfield(1.5, units="m"))
    entry.sample = NXsample(temperature=NXfield(300.0, units="K"), chemical_formula="SiO2")
    entry.monitor = NXmonitor(data=NXfield(np.ones(20, dtype=np.float32), units="counts"))
    entry.data = NXdata()
    entry.data.makelink(entry.instrument.detector.counts)  # hard link + @target
    entry.data.y = NXfield(np.arange(20) * 0.5, units="K")
    entry.data.x = NXfield(np.arange(100) * 0.25, units="mm", long_name="X position")
    entry.data.nxsignal = entry.data.counts
    entry.data.nxaxes = [entry.data.y, entry.data.x]
    entry.data.title = "counts vs y, x"
    entry.data.set_default()  # @default on the entry and the root
    root.save(path, "w")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_peer_files.py OUTDIR")
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    write_types(out / "types.h5")
    write_links(out / "links.h5", "external_target.h5")
    write_vds(out)
    write_compressed(out / "compressed.h5")
    write_nexus(out / "nexus.nxs")
    big = [p.name for p in out.iterdir() if p.stat().st_size > 1 << 20]
    if big:
        sys.exit(f"make_peer_files: files over 1 MB: {big}")
    print(f"make_peer_files: wrote {len(list(out.iterdir()))} files to {out}")


if __name__ == "__main__":
    main()
