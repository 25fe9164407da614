#!/usr/bin/env python3
"""Writes the demo NeXus file scripts/nxlua opens: a small, realistic area-detector scan
(20 frames of 195 x 487, one Pilatus module) laid out as areaDetector/nexusformat users
know it, written with h5py so that it is a file from the tools scientists use today.

usage: make_demo.py OUT.nxs
"""
import sys

import h5py
import numpy as np


def frames(n=20, ny=195, nx=487, seed=7):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:ny, 0:nx]
    cy, cx = 97.0, 250.0
    r = np.hypot(y - cy, x - cx)
    background = 40.0 * np.exp(-r / 120.0) + 2.0
    stack = np.empty((n, ny, nx), dtype=np.int32)
    for i in range(n):
        # a Bragg spot that rises and falls through the rotation, plus Poisson noise
        peak = 5e4 * np.exp(-((i - n / 2) / 3.0) ** 2)
        spot = peak * np.exp(-((y - 60) ** 2 + (x - 300) ** 2) / (2 * 2.5 ** 2))
        stack[i] = rng.poisson(background + spot)
    stack[:, :, 100] = -2  # a dead column, as Pilatus marks it
    return stack


def main(out):
    data = frames()
    n, ny, nx = data.shape
    with h5py.File(out, "w") as f:
        f.attrs["default"] = "entry"
        f.attrs["creator"] = "nxlua scripts/examples/make_demo.py (h5py)"
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "data"
        entry["title"] = "demo: omega scan of one Pilatus module"
        entry["start_time"] = "2026-11-24T03:00:00+01:00"
        inst = entry.create_group("instrument")
        inst.attrs["NX_class"] = "NXinstrument"
        det = inst.create_group("detector")
        det.attrs["NX_class"] = "NXdetector"
        counts = det.create_dataset("data", data=data, chunks=(1, ny, nx), compression="gzip",
                                    compression_opts=1)
        counts.attrs["units"] = "counts"
        counts.attrs["long_name"] = "Pilatus counts"
        det["distance"] = 250.0
        det["distance"].attrs["units"] = "mm"
        det["x_pixel_size"] = 0.172
        det["x_pixel_size"].attrs["units"] = "mm"
        det["y_pixel_size"] = 0.172
        det["y_pixel_size"].attrs["units"] = "mm"
        det["count_time"] = np.full(n, 0.1)
        det["count_time"].attrs["units"] = "s"
        mono = inst.create_group("monochromator")
        mono.attrs["NX_class"] = "NXmonochromator"
        mono["wavelength"] = 0.7749
        mono["wavelength"].attrs["units"] = "angstrom"
        sample = entry.create_group("sample")
        sample.attrs["NX_class"] = "NXsample"
        sample["name"] = "LaB6"
        sample["temperature"] = 300.0
        sample["temperature"].attrs["units"] = "K"
        omega = np.linspace(10.0, 11.9, n)
        sample["omega"] = omega
        sample["omega"].attrs["units"] = "degree"
        nxdata = entry.create_group("data")
        nxdata.attrs["NX_class"] = "NXdata"
        nxdata.attrs["signal"] = "counts"
        nxdata.attrs["axes"] = ["omega", "y", "x"]
        nxdata.attrs["omega_indices"] = 0
        nxdata.attrs["y_indices"] = 1
        nxdata.attrs["x_indices"] = 2
        nxdata["counts"] = counts  # a hard link, as areaDetector writes it
        counts.attrs["target"] = counts.name
        nxdata["omega"] = sample["omega"]
        nxdata["y"] = np.arange(ny, dtype=np.float64) * 0.172
        nxdata["y"].attrs["units"] = "mm"
        nxdata["x"] = np.arange(nx, dtype=np.float64) * 0.172
        nxdata["x"].attrs["units"] = "mm"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
