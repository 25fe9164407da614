"""Shapes, masks and selection from Lua: views, concat/stack, masks, index arrays,
where/clip and array.random, compared with NumPy where it helps."""
import math
import pathlib
import re
import textwrap

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float32", "float64"]

# Lua helper: prints one array as "dtype|shape|values" with exact values
DUMP = r"""
local function dump(a)
  local s = {}
  for i, v in ipairs(a:flatten():totable()) do
    if type(v) == "boolean" then s[i] = v and "1" or "0"
    elseif math.type(v) == "integer" then s[i] = string.format("%d", v)
    else s[i] = string.format("%.17g", v) end
  end
  print(a.dtype .. "|" .. table.concat(a.shape, ",") .. "|" .. table.concat(s, ","))
end
"""


def run(nxlua, code):
    r = nxlua("-e", DUMP + textwrap.dedent(code))
    assert r.returncode == 0, r.stderr
    return r.stdout


def fails(nxlua, code):
    r = nxlua("-e", textwrap.dedent(code))
    assert r.returncode == 1, r.stdout
    return r.stderr


def parse(line):
    dtype, shape, values = line.split("|")
    shape = tuple(int(n) for n in shape.split(",")) if shape else ()
    vals = [float(v) if dtype.startswith("float") else int(v) for v in values.split(",")] if values else []
    if dtype == "uint64":
        vals = [v % 2**64 for v in vals]  # Lua prints uint64 above 2^63 as negative integers
    return np.array(vals, dtype=dtype).reshape(shape)


def dumps(out):
    return [parse(line) for line in out.splitlines()]


def same(got, want):
    """Same dtype, shape and values (NaN equal to NaN)."""
    want = np.asarray(want)
    assert got.dtype == want.dtype, f"dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------------------
# every operation, every dtype, on strided and transposed views, against NumPy

@pytest.mark.parametrize("dtype", DTYPES)
def test_every_operation_matches_numpy(nxlua, dtype):
    out = run(nxlua, f"""
        local x = (array.arange(24) - 10):astype("{dtype}"):reshape({{4, 6}})
        local v = x["::2, ::-1"]
        local w = x.T
        local mask = (array.arange(12):reshape({{2, 6}}) % 3):eq(0)
        local wmask = (array.arange(24):reshape({{6, 4}}) % 5):eq(1)
        dump(v.T); dump(v:transpose({{1, 0}})); dump(w:ravel()); dump(v:flatten())
        dump(v:expand(1)); dump(v:expand(-1):squeeze()); dump(w:permute(1, 0))
        dump(array.concat({{v, x["1:2"]}})); dump(array.concat({{v, w["0:2"]}}, 1))
        dump(array.stack({{v, v}}, 2)); dump(array.stack({{w, w}}, -1))
        dump(v[mask]); dump(w[wmask]); dump(v[array.from({{true, false}})])
        dump(v[array.from({{1, 0, -1}})]); dump(v:take({{5, 0, -2}}, 1)); dump(w:take(array.from({{{{0, 1}}, {{3, 3}}}}), 0))
        dump(array.where(mask, v, 0)); dump(array.where(mask, v, 0.5)); dump(array.where(mask, v, w.T["1::2"]))
        dump(v:clip(1, 5)); dump(v:clip(nil, 3.5)); dump(v:clip(-2, nil))
        local nz = v:nonzero(); dump(nz[1]); dump(nz[2]); dump(array.argwhere(w))
        local y = x:copy()
        local yv = y["::2, ::-1"]
        yv[mask] = 7
        yv[array.from({{1}})] = 1
        y.T[array.from({{0, -1}})] = 0
        dump(y)
    """)
    got = dumps(out)
    x = (np.arange(24) - 10).astype(dtype).reshape(4, 6)
    v = x[::2, ::-1]
    w = x.T
    mask = (np.arange(12).reshape(2, 6) % 3) == 0
    wmask = (np.arange(24).reshape(6, 4) % 5) == 1
    nz = np.nonzero(v)
    y = x.copy()
    yv = y[::2, ::-1]
    yv[mask] = 7
    yv[np.array([1])] = 1
    y.T[np.array([0, -1])] = 0
    want = [
        v.T, v.transpose(1, 0), w.ravel(), v.flatten(),
        np.expand_dims(v, 1), np.expand_dims(v, -1).squeeze(), w.transpose(1, 0),
        np.concatenate([v, x[1:2]]), np.concatenate([v, w[0:2]], 1),
        np.stack([v, v], 2), np.stack([w, w], -1),
        v[mask], w[wmask], v[np.array([True, False])],
        v[np.array([1, 0, -1])], np.take(v, [5, 0, -2], axis=1), np.take(w, np.array([[0, 1], [3, 3]]), axis=0),
        np.where(mask, v, 0), np.where(mask, v, 0.5), np.where(mask, v, w.T[1::2]),
        np.clip(v, 1, 5), np.clip(v, None, 3.5), np.clip(v, -2, None),
        nz[0], nz[1], np.argwhere(w),
        y,
    ]
    assert len(got) == len(want)
    for k, (g, e) in enumerate(zip(got, want)):
        try:
            same(g, e)
        except AssertionError as err:
            raise AssertionError(f"result #{k + 1}: {err}\ngot  {g!r}\nwant {e!r}") from None


def test_concat_promotes_like_numpy(nxlua):
    pairs = [("int32", "float32"), ("int16", "float32"), ("uint8", "int8"), ("uint32", "int32"),
             ("int64", "uint64"), ("bool", "uint16"), ("bool", "bool"), ("float32", "float32")]
    code = "\n".join(f'print(array.concat({{array.zeros(2, "{a}"), array.ones(1, "{b}")}}).dtype)'
                     for a, b in pairs)
    out = run(nxlua, code).split()
    want = [str(np.concatenate([np.zeros(2, a), np.ones(1, b)]).dtype) for a, b in pairs]
    assert out == want


def test_where_dtypes_like_numpy(nxlua):
    cases = [("int32", "0"), ("int32", "0.5"), ("float32", "0"), ("float32", "2.5"), ("uint8", "1"),
             ("bool", "true"), ("bool", "1"), ("int8", "true"), ("float32", "false"), ("int8", "array.ones(3, 'int16')"),
             ("float32", "array.ones(3, 'int32')")]
    code = "\n".join(f'print(array.where(array.from({{true, false, true}}), array.ones(3, "{d}"), {y}).dtype)'
                     for d, y in cases)
    out = run(nxlua, code).split()
    py = {"0": 0, "0.5": 0.5, "2.5": 2.5, "1": 1, "true": True, "false": False,
          "array.ones(3, 'int16')": np.ones(3, "int16"), "array.ones(3, 'int32')": np.ones(3, "int32")}
    want = [str(np.where([True, False, True], np.ones(3, d), py[y]).dtype) for d, y in cases]
    assert out == want
    out = run(nxlua, "print(array.where(array.from({true, false}), true, false), array.where(array.from({true}), 1, false).dtype)")
    assert out == "array([ True, False])\tint64\n"


def test_clip_keeps_integers_and_propagates_nan(nxlua):
    out = run(nxlua, """
        local u = array.from({0, 100, 255}, "uint8")
        dump(u:clip(0, 300)); dump(u:clip(10, 200)); dump(u:clip(0.5, nil))
        dump(array.from({1, 0/0, 5}):clip(2, 4)); dump(array.from({1, 2, 3}):clip(0/0, nil))
        dump(array.arange(6):reshape({2, 3}):clip(array.from({1, 2, 3}), 4))
        dump(array.from({true, false}):clip(0, 1))
        dump(array.arange(5):clip(3, 1))
    """)
    got = dumps(out)
    u = np.array([0, 100, 255], "uint8")
    want = [np.clip(u, 0, 300), np.clip(u, 10, 200), np.clip(u, 0.5, None),
            np.clip(np.array([1, np.nan, 5]), 2, 4), np.clip(np.array([1, 2, 3]), np.nan, None),
            np.clip(np.arange(6).reshape(2, 3), np.array([1, 2, 3]), 4),
            np.clip(np.array([True, False]), 0, 1), np.clip(np.arange(5), 3, 1)]
    for g, e in zip(got, want):
        same(g, e)
    assert len(got) == len(want)
    err = fails(nxlua, "array.from({1, 2}, 'uint8'):clip(nil, -1)")
    assert "clip: upper bound -1 is below the smallest uint8 (0)" in err


# ---------------------------------------------------------------------------------------
# views share memory, selections copy

def test_views_write_through_and_selections_copy(nxlua):
    out = run(nxlua, """
        local a = array.zeros({2, 3}, "int32")
        a.T[2][1] = 5                  -- a view: writes a[1][2]
        a:ravel()[0] = 1               -- contiguous: a view
        a:expand(0)[0][1][0] = 2       -- a view
        a:squeeze()[1][1] = 3          -- nothing to squeeze: still a view
        a.T:ravel()[1] = 99            -- transposed is not contiguous: a copy
        a:flatten()[0] = 99            -- always a copy
        a[a:gt(0)][0] = 99             -- a mask selection is a copy
        a[array.from({0})][0][0] = 99  -- so is an index selection
        dump(a)
    """)
    same(parse(out.strip()), np.array([[1, 0, 0], [2, 3, 5]], "int32"))


def test_transpose_without_argument_and_of_1d_and_0d(nxlua):
    out = run(nxlua, """
        dump(array.arange(3).T); dump(array.arange(3):transpose())
        print(array.zeros({2, 3, 4}).T.shape[1], array.zeros({2, 3, 4}):transpose(nil).shape[1])
        print(array.zeros({}):transpose().ndim)
    """)
    lines = out.splitlines()
    same(parse(lines[0]), np.arange(3))
    same(parse(lines[1]), np.arange(3))
    assert lines[2:] == ["4\t4", "0"]


def test_masks_of_leading_axes_and_assignment(nxlua):
    out = run(nxlua, """
        local frames = array.arange(24):reshape({4, 2, 3})
        local good = array.from({true, false, true, true})
        dump(frames[good])
        frames[good] = array.arange(3) * 100     -- a row broadcast to each selected frame
        dump(frames)
        local img = array.arange(6, "float32"):reshape({2, 3})
        img[img:gt(2)] = array.from({-1, -2, -3})
        img[img:eq(0)] = 0.5
        dump(img)
    """)
    got = dumps(out)
    frames = np.arange(24).reshape(4, 2, 3)
    good = np.array([True, False, True, True])
    sel = frames[good]
    frames[good] = np.arange(3) * 100
    img = np.arange(6, dtype="float32").reshape(2, 3)
    img[img > 2] = np.array([-1, -2, -3])
    img[img == 0] = 0.5
    for g, e in zip(got, [sel, frames, img]):
        same(g, e)


def test_index_arrays_negative_repeated_multidimensional(nxlua):
    out = run(nxlua, """
        local a = array.arange(10) * 10
        dump(a[array.from({-1, 0, 0, 3})])
        dump(a[array.from({{1, 2}, {3, 4}}, "uint16")])
        dump(a:take({}))
        print(a:take(3), a:take(-1), math.type(a:take(2)))
        local g = array.arange(12):reshape({3, 4})
        dump(g:take({5, 0, -1})); dump(g.T:take({1, 4})); dump(g:take({{0, 11}}))
        local b = array.arange(10)
        b[array.from({1, 1, 5})] = array.from({7, 8, 9})
        dump(b)
        local m = array.arange(12):reshape({3, 4})
        m[array.from({{0}, {2}})] = 0
        dump(m)
    """)
    lines = out.splitlines()
    a = np.arange(10) * 10
    same(parse(lines[0]), a[np.array([-1, 0, 0, 3])])
    same(parse(lines[1]), a[np.array([[1, 2], [3, 4]], "uint16")])
    same(parse(lines[2]), np.take(a, np.array([], "int64")))
    assert lines[3] == "30\t90\tinteger"
    g = np.arange(12).reshape(3, 4)
    same(parse(lines[4]), np.take(g, [5, 0, -1]))
    same(parse(lines[5]), np.take(g.T, [1, 4]))
    same(parse(lines[6]), np.take(g, [[0, 11]]))
    b = np.arange(10)
    b[np.array([1, 1, 5])] = np.array([7, 8, 9])
    same(parse(lines[7]), b)
    m = np.arange(12).reshape(3, 4)
    m[np.array([[0], [2]])] = 0
    same(parse(lines[8]), m)


def test_nonzero_where_alone_and_argwhere(nxlua):
    out = run(nxlua, """
        local img = array.from({{0, 3, 0}, {1, 0, 0/0}})
        local nz = img:nonzero()
        print(#nz); dump(nz[1]); dump(nz[2])
        local w = array.where(img:gt(0))
        dump(w[1]); dump(w[2])
        dump(array.argwhere(img))
        print(#array.zeros({2, 2}):nonzero()[1])
    """)
    lines = out.splitlines()
    img = np.array([[0, 3, 0], [1, 0, np.nan]])
    assert lines[0] == "2"
    nz = np.nonzero(img)
    w = np.where(img > 0)
    for line, e in zip(lines[1:5], [nz[0], nz[1], w[0], w[1]]):
        same(parse(line), e)
    same(parse(lines[5]), np.argwhere(img))
    assert lines[6] == "0"


# ---------------------------------------------------------------------------------------
# errors name the values and shapes

@pytest.mark.parametrize("code, message", [
    ("array.zeros({2, 3}):transpose({0, 0})", "repeated axis 0 in transpose axes (0, 0) for array of shape (2, 3)"),
    ("array.zeros({2, 3}):transpose({1})", "axes (1,) don't match array of shape (2, 3): 2 axes expected, got 1"),
    ("array.zeros({2, 3}):permute(0, 2)", "axis 2 is out of bounds for array of dimension 2 (shape (2, 3))"),
    ("array.zeros({2, 3}):squeeze(1)", "cannot squeeze axis 1 of shape (2, 3): its length is 3, not 1"),
    ("array.zeros({2, 3}):expand(3)", "axis 3 is out of bounds for a new axis of an array of shape (2, 3) (-3 to 2 allowed)"),
    ("array.concat({array.zeros({2, 3}), array.zeros({2, 4})})",
     "array #1 has shape (2, 3) and array #2 has shape (2, 4): they differ along axis 1, and only the concatenation axis 0 may differ"),
    ("array.concat({array.zeros({2, 3}), array.zeros(3)})",
     "all the arrays must have the same number of dimensions, but array #1 has shape (2, 3) and array #2 has shape (3,)"),
    ("array.concat({})", "need at least one array to concatenate"),
    ("array.concat({array.zeros(3), 'x'})", "bad argument #1 to 'concat' (entry #2 of the list is a string, ndarray expected)"),
    ("array.stack({array.zeros(3), array.zeros(2)})",
     "all the arrays to stack must have the same shape, but array #1 has shape (3,) and array #2 has shape (2,)"),
    ("local a = array.zeros({3, 2}); print(a[array.from({true, false})])",
     "boolean mask of shape (2,) does not match array of shape (3, 2) along axis 0: the array has 3, the mask 2"),
    ("local a = array.zeros(3); a[a:eq(0)] = array.zeros(2)",
     "cannot assign an array of shape (2,) to the 3 positions the mask selects (selection shape (3,))"),
    ("print(array.zeros(3)[array.from({3})])", "index 3 is out of bounds for axis 0 with size 3"),
    ("print(array.zeros({2, 5}):take({-6}, 1))", "index -6 is out of bounds for axis 1 with size 5"),
    ("local a = array.zeros(3); a[array.from({-4})] = 1", "index -4 is out of bounds for axis 0 with size 3"),
    ("print(array.zeros(3)[array.from({1.0})])", "arrays used as indices must be of integer (or boolean) type, got float64"),
    ("print(array.zeros(3):take({0}, 1))", "axis 1 is out of bounds for array of dimension 1 (shape (3,))"),
    ("array.where(array.from({true, false}), array.zeros(3), 0)",
     "where: cond, x and y could not be broadcast together with shapes (2,) (3,) ()"),
    ("array.where(array.from({true}), 1)", "where takes cond alone, or cond, x and y"),
    ("array.zeros({}):nonzero()", "nonzero of a 0-d array is not allowed"),
    ("array.random.integers(5, 5, 3)", "integers: low 5 must be less than high 5"),
    ("array.random.integers(0, 256, 3, 'int8')", "integers: [0, 256) does not fit int8 (-128 to 127)"),
    ("array.random.rand(3, 'int32')", "rand gives float32 or float64, not int32"),
    ("array.random.poisson(-2, 3)", "poisson: means must be non-negative numbers, got -2.0"),
    ("array.random.poisson(array.ones(3), {2})", "poisson: means of shape (3,) cannot broadcast to shape (2,)"),
])
def test_errors_name_values_and_shapes(nxlua, code, message):
    assert message in fails(nxlua, code)


# ---------------------------------------------------------------------------------------
# array.random

M64 = (1 << 64) - 1


def xoshiro256ss(seed):
    """The reference algorithms (SplitMix64 seeding, xoshiro256** 1.0), transcribed."""
    x = seed % 2**64
    state = []
    for _ in range(4):
        x = (x + 0x9E3779B97F4A7C15) & M64
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        state.append(z ^ (z >> 31))
    s = state

    def rotl(v, k):
        return ((v << k) | (v >> (64 - k))) & M64
    while True:
        result = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        yield result


@pytest.mark.parametrize("seed", [0, 42, -1, 2**62 + 12345])
def test_rand_is_the_reference_generator(nxlua, seed):
    out = run(nxlua, f"array.random.seed({seed}); dump(array.random.rand(50)); dump(array.random.rand(5, 'float32'))")
    lines = out.splitlines()
    g = xoshiro256ss(seed)
    want = np.array([(next(g) >> 11) * 2.0**-53 for _ in range(50)])
    same(parse(lines[0]), want)
    want32 = np.array([(next(g) >> 40) * 2.0**-24 for _ in range(5)], "float32")
    same(parse(lines[1]), want32)


def test_same_seed_same_numbers_across_runs(nxlua):
    code = """
        array.random.seed(1234)
        dump(array.random.rand({2, 3})); dump(array.random.randn(7)); dump(array.random.integers(-5, 5, {4}, "int16"))
        dump(array.random.poisson(3.5, 6)); dump(array.random.poisson(array.from({{0, 20}, {500, 1e6}})))
        print(array.random.rand(), array.random.randn(), array.random.integers(0, 10), array.random.poisson(2))
    """
    first = run(nxlua, code)
    assert run(nxlua, code) == first
    assert run(nxlua, code.replace("1234", "1235")) != first
    # seed() again restarts the sequence within a run
    out = run(nxlua, "array.random.seed(9); local a = array.random.randn(5); array.random.seed(9); "
                     "local b = array.random.randn(5); print(a:eq(b):sum())")
    assert out.strip() == "5"


def test_unseeded_runs_differ(nxlua):
    a = run(nxlua, "print(string.format('%.17g', array.random.rand()))")
    b = run(nxlua, "print(string.format('%.17g', array.random.rand()))")
    assert a != b


def test_random_shapes_dtypes_and_scalars(nxlua):
    out = run(nxlua, """
        array.random.seed(5)
        local r = array.random.rand({3, 4})
        print(r.dtype, table.concat(r.shape, "x"), array.random.rand(2, "float32").dtype)
        print(array.random.randn({2, 2}, "float32").dtype, array.random.integers(0, 2, 3, "bool").dtype)
        print(math.type(array.random.rand()), math.type(array.random.integers(1, 7)), math.type(array.random.poisson(4)))
        print(array.random.poisson(array.ones({2, 5}) * 3).dtype, table.concat(array.random.poisson(array.ones(5), {2, 5}).shape, "x"))
        local k = array.random.integers(-3, 4, 10000, "int8")
        print(k:min(), k:max())
        local u = array.random.rand(10000)
        print(u:min() >= 0, u:max() < 1)
    """)
    assert out.splitlines() == [
        "float64\t3x4\tfloat32",
        "float32\tbool",
        "float\tinteger\tinteger",
        "int64\t2x5",
        "-3\t3",
        "true\ttrue",
    ]


@pytest.mark.parametrize("lam", [0.3, 6.0, 25.0, 4000.0])
def test_poisson_moments(nxlua, lam):
    """Mean and variance of Poisson counts equal the mean (both samplers: below and above 10)."""
    out = run(nxlua, f"array.random.seed(77); local p = array.random.poisson({lam}, 200000); "
                     "print(p:mean(), ((p - p:mean()) ^ 2):mean(), p:min())")
    mean, var, low = (float(v) for v in out.split())
    n = 200000
    assert abs(mean - lam) < 6 * math.sqrt(lam / n)
    assert abs(var / lam - 1) < 0.03
    assert low >= 0


def test_randn_moments_and_tails(nxlua):
    out = run(nxlua, "array.random.seed(3); local z = array.random.randn(200000); "
                     "print(z:mean(), ((z - z:mean()) ^ 2):mean(), z:gt(1.96):mean() + z:lt(-1.96):mean())")
    mean, var, tails = (float(v) for v in out.split())
    assert abs(mean) < 0.01
    assert abs(var - 1) < 0.01
    assert abs(tails - 0.05) < 0.003


def test_help_describes_the_new_calls(nxlua):
    out = run(nxlua, """
        local h = require("nxlua.help")
        io.write(h.text(array)); io.write(h.text(array.random)); io.write(h.text("ndarray"))
        io.write(h.text("ndarray:take")); io.write(h.text(array.random.poisson))
    """)
    for text in ["array.concat", "array.stack", "array.where", "array.argwhere",
                 "array.random.seed", "array.random.rand", "array.random.randn", "array.random.integers",
                 "xoshiro256**", "ndarray:transpose", "ndarray:permute", "ndarray:squeeze", "ndarray:expand",
                 "ndarray:flatten", "ndarray:ravel", "ndarray:take", "ndarray:nonzero", "ndarray:clip",
                 "a:take(indices [, axis]) -> ndarray", "positions count in the flattened array",
                 "array.random.poisson(lam [, shape]) -> ndarray|integer"]:
        assert text in out, text


# ---------------------------------------------------------------------------------------
# the docs' examples run and print what the docs say

def doc_blocks():
    text = (ROOT / "docs" / "arrays.md").read_text()
    start = text.index("## Shapes, masks and selection")
    section = text[start:text.index("\n## Errors", start)]
    return re.findall(r"```lua\n(.*?)```", section, re.S)


def test_docs_section_has_examples_for_every_operation():
    code = "\n".join(doc_blocks())
    for call in [".T", ":transpose(", ":permute(", ":squeeze(", ":expand(", ":flatten(", ":ravel(",
                 "array.concat(", "array.stack(", ":take(", ":nonzero(", "array.argwhere(", "array.where(",
                 ":clip(", "array.random.seed(", "array.random.rand(", "array.random.randn(",
                 "array.random.integers(", "array.random.poisson("]:
        assert call in code, call
    assert re.search(r"\[a:gt\(", code) and re.search(r"\] = ", code)


@pytest.mark.parametrize("block", doc_blocks(), ids=lambda b: b.splitlines()[0][:40])
def test_docs_examples_print_what_they_say(nxlua, block):
    expected = [m.group(1) for m in re.finditer(r"--> ?(.*)$", block, re.M)]
    r = nxlua("-e", block)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == expected
