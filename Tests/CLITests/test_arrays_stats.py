"""Statistics, histograms, running sums, matrix products and valid-pixel sums from Lua,
compared with NumPy computed here on the same data (all dtypes, strided views, empty
arrays, errors)."""
import math
import textwrap

import numpy as np
import pytest

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"]

# Prints a result so that parse() can read it back: "S <type> <value>" for Lua values,
# "A <dtype> <shape> <values...>" for arrays (floats with 17 digits).
PRELUDE = r"""
local function fmt(v)
  if type(v) == "boolean" then return v and "1" or "0" end
  if math.type(v) == "integer" then return tostring(v) end
  return string.format("%.17g", v)
end
function out(x)
  if type(x) ~= "userdata" then print("S " .. (math.type(x) or type(x)) .. " " .. fmt(x)); return end
  local flat = x:copy():reshape(x.size):totable()
  local vals = {}
  for i, v in ipairs(flat) do vals[i] = fmt(v) end
  print("A " .. x.dtype .. " " .. table.concat(x.shape, ",") .. " " .. table.concat(vals, " "))
end
"""


def lua_number(v):
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if math.isnan(v):
        return "0/0"
    if math.isinf(v):
        return "1/0" if v > 0 else "-1/0"
    return repr(v)


def lua_array(x):
    """A Lua expression that builds the same array as the NumPy array x."""
    x = np.asarray(x)
    values = ", ".join(lua_number(v) for v in x.ravel().tolist())
    shape = ", ".join(str(n) for n in x.shape)
    return f'array.from({{{values}}}, "{x.dtype.name}"):reshape({{{shape}}})'


def parse(line):
    kind, rest = line.split(" ", 1)
    if kind == "S":
        t, v = rest.split(" ", 1)
        return ("integer" if t == "integer" else "boolean" if t == "boolean" else "float", float(v) if t == "float" else int(v))
    parts = rest.split(" ")
    dtype, shape = parts[0], tuple(int(n) for n in parts[1].split(",") if n)
    values = [float(v) for v in parts[2:] if v]
    return (dtype, np.array(values, dtype=np.float64).reshape(shape))


# Large inputs are built by broadcasting small aranges: array.arange sets one element at a
# time, which is slow in the sanitized debug binary the test script also runs.


def run(nxlua, code):
    code = PRELUDE + textwrap.dedent(code)
    if len(code) < 100_000:
        r = nxlua("-e", code)
    else:  # beyond what one command-line argument may hold: a script file
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
            f.write(code)
            f.flush()
            r = nxlua(f.name)
    assert r.returncode == 0, r.stderr
    return r.stdout


def results(nxlua, setup, exprs):
    """Runs `setup`, then out(expr) for each expression; returns the parsed results."""
    code = setup + "\n" + "\n".join(f"out({e})" for e in exprs)
    lines = run(nxlua, code).splitlines()
    assert len(lines) == len(exprs), lines
    return [parse(line) for line in lines]


def same(got, expected, dtype=None, rtol=1e-12, atol=0.0):
    """got (from parse) against a NumPy value; dtype checked when given."""
    kind, value = got
    expected = np.asarray(expected)
    if dtype is not None:
        if expected.ndim == 0:
            assert kind == ("boolean" if dtype == "bool" else "integer" if np.dtype(dtype).kind in "iu" else "float"), (kind, dtype)
        else:
            assert kind == dtype, (kind, dtype)
    value = np.asarray(value, dtype=np.float64)
    assert value.shape == expected.shape, (value.shape, expected.shape)
    np.testing.assert_allclose(value, expected.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True)


def sample(dtype, shape=(5, 6), seed=1):
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.startswith("float"):
        x = rng.normal(0, 10, shape).astype(dtype)
        x.flat[3] = x.flat[0]  # a tie
        return x
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -100), min(info.max, 100)
    x = rng.integers(lo, hi + 1, shape).astype(dtype)
    x.flat[7] = x.flat[2]
    return x


# MARK: argmin/argmax, counts, truth tests


@pytest.mark.parametrize("dtype", DTYPES)
def test_argmin_argmax_counts_any_all_match_numpy(nxlua, dtype):
    x = sample(dtype)
    v = x[::2, ::-1]
    exprs, expected = [], []
    for name, arr, lua in (("x", x, "x"), ("v", v, 'x["::2, ::-1"]')):
        for op in ("argmin", "argmax", "nanargmin", "nanargmax"):
            npop = getattr(np, op)
            exprs += [f"{lua}:{op}()", f"{lua}:{op}(0)", f"{lua}:{op}(-1)", f"{lua}:{op}(1, true)"]
            expected += [(npop(arr), "int64"), (npop(arr, axis=0), "int64"), (npop(arr, axis=-1), "int64"),
                         (npop(arr, axis=1, keepdims=True), "int64")]
        exprs += [f"{lua}:count_nonzero()", f"{lua}:count_nonzero(0)", f"{lua}:count_nonzero({{0, 1}}, true)",
                  f"{lua}:any()", f"{lua}:any(1)", f"{lua}:all()", f"{lua}:all(0, true)"]
        expected += [(np.count_nonzero(arr), "int64"), (np.count_nonzero(arr, axis=0), "int64"),
                     (np.count_nonzero(arr, axis=(0, 1), keepdims=True), "int64"),
                     (arr.any(), "bool"), (arr.any(1), "bool"), (arr.all(), "bool"), (arr.all(0, keepdims=True), "bool")]
    got = results(nxlua, f"local x = {lua_array(x)}", exprs)
    for g, (e, t), expr in zip(got, expected, exprs):
        same(g, e, t), expr


def test_argmin_nan_wins_and_nanarg_skips(nxlua):
    x = np.array([[1.0, np.nan, -3.0, np.nan], [5.0, 2.0, 2.0, -1.0], [np.inf, -np.inf, 0.0, 7.0]])
    exprs = ["x:argmin()", "x:argmax()", "x:argmin(1)", "x:argmax(1)", "x:nanargmin()", "x:nanargmax()",
             "x:nanargmin(1)", "x:nanargmax(0)", "x:argmin(0)"]
    expected = [np.argmin(x), np.argmax(x), np.argmin(x, 1), np.argmax(x, 1), np.nanargmin(x), np.nanargmax(x),
                np.nanargmin(x, 1), np.nanargmax(x, 0), np.argmin(x, 0)]
    for g, e in zip(results(nxlua, f"local x = {lua_array(x)}", exprs), expected):
        same(g, e, "int64")


def test_all_nan_slices_and_empty_arrays_give_clear_errors(nxlua):
    r = nxlua("-e", "local x = array.from({{1, 0/0}, {0/0, 0/0}}); print(x:nanargmax(1))")
    assert r.returncode == 1
    assert "All-NaN slice encountered in nanargmax: a[1, :] of shape (2, 2) is all NaN" in r.stderr
    r = nxlua("-e", "print(array.full({2, 3}, 0/0):nanargmin())")
    assert "All-NaN slice encountered in nanargmin: all 6 elements of shape (2, 3) are NaN" in r.stderr
    r = nxlua("-e", "print(array.zeros({0}):argmin())")
    assert "attempt to get argmin of an empty sequence (axis 0 of shape (0,) has length 0)" in r.stderr
    r = nxlua("-e", "print(array.zeros({0, 3}):argmax(0))")
    assert "attempt to get argmax of an empty sequence" in r.stderr
    r = nxlua("-e", "print(array.zeros({2, 3}):argmax({0, 1}))")
    assert "argmax takes one axis (an integer) or none, got 2 axes" in r.stderr
    r = nxlua("-e", "print(array.zeros({0, 4}):nanmin(0))")
    assert "zero-size array to reduction operation nanmin which has no identity" in r.stderr
    # what is defined for empty arrays: NumPy's values
    out = run(nxlua, """
        local e = array.zeros({0, 3}, "int32")
        out(e:argmin(1)); out(e:count_nonzero()); out(e:any()); out(e:all()); out(e:cumsum()); out(e:sum_valid(0))
        out(e:count_valid(1)); out(e:var()); out(e:nanmean())
    """)
    got = [parse(line) for line in out.splitlines()]
    same(got[0], np.zeros(0), "int64")
    same(got[1], 0, "int64")
    same(got[2], False, "bool")
    same(got[3], True, "bool")
    same(got[4], np.zeros(0), "int64")
    same(got[5], np.zeros(3), "int64")
    same(got[6], np.zeros(0), "int64")
    same(got[7], np.nan, "float64")
    same(got[8], np.nan, "float64")


# MARK: variance


@pytest.mark.parametrize("dtype", DTYPES)
def test_var_std_match_numpy(nxlua, dtype):
    x = sample(dtype, (4, 5, 6), seed=2)
    exprs, expected = [], []
    for lua, arr in (("x", x), ('x["::2, ::-1, 1:"]', x[::2, ::-1, 1:])):
        a = arr.astype(np.float64)
        exprs += [f"{lua}:var()", f"{lua}:std()", f"{lua}:var(0)", f"{lua}:std({{0, 2}}, true)",
                  f"{lua}:var(-1, false, 1)", f"{lua}:std(nil, false, 1)", f"{lua}:nanvar(1)", f"{lua}:nanstd()"]
        expected += [a.var(), a.std(), a.var(0), a.std(axis=(0, 2), keepdims=True), a.var(-1, ddof=1),
                     a.std(ddof=1), np.nanvar(a, 1), np.nanstd(a)]
    for g, e in zip(results(nxlua, f"local x = {lua_array(x)}", exprs), expected):
        same(g, e, "float64", rtol=1e-6 if dtype == "float32" else 1e-12, atol=1e-12)


def test_variance_survives_a_large_offset(nxlua):
    """1e8 + noise: one-pass formulas (E[x^2] - E[x]^2) lose every digit here."""
    rng = np.random.default_rng(7)
    x = 1e8 + rng.normal(0, 1, (50, 40))
    got = results(nxlua, f"local x = {lua_array(x)}", ["x:var()", "x:std(0)", "x:var(1, false, 1)", "x:nanvar()"])
    same(got[0], x.var(), rtol=1e-9)
    same(got[1], x.std(0), rtol=1e-9)
    same(got[2], x.var(1, ddof=1), rtol=1e-9)
    same(got[3], np.nanvar(x), rtol=1e-9)
    assert abs(got[0][1] - 1) < 0.1  # the noise's variance, not 0 or garbage


def test_ddof_edge_cases_follow_numpy(nxlua):
    with np.errstate(divide="ignore", invalid="ignore"):
        got = results(nxlua, "local x = array.from({{1, 2}, {3, 5}})",
                      ["x:var(0, false, 2)", "x:var(0, false, 3)", "array.from({4.0}):std(0, false, 1)"])
        x = np.array([[1, 2], [3, 5]])
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            same(got[0], x.var(0, ddof=2), "float64")
            same(got[1], x.var(0, ddof=3), "float64")
            same(got[2], np.array([4.0]).std(0, ddof=1), "float64")


# MARK: NaN-aware reductions


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16", "uint32", "bool"])
def test_nan_reductions_match_numpy(nxlua, dtype):
    x = sample(dtype, (4, 7), seed=3)
    if dtype.startswith("float"):
        x[1, 2] = x[3, 0] = x[0, 6] = np.nan
        x[2, :] = np.nan  # an all-NaN row
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exprs = ["x:nansum()", "x:nansum(0)", "x:nanmin(1)", "x:nanmax(0, true)", "x:nanmean()", "x:nanmean(1)",
                 "x:nanmin()", "x:nanmax()", 'x["::-1, ::3"]:nansum(1)', "x:nanvar(0, false, 1)"]
        expected = [(np.nansum(x), None), (np.nansum(x, 0), None), (np.nanmin(x, 1), dtype), (np.nanmax(x, 0, keepdims=True), dtype),
                    (np.nanmean(x), None), (np.nanmean(x, 1), None), (np.nanmin(x), None), (np.nanmax(x), None),
                    (np.nansum(x[::-1, ::3], 1), None), (np.nanvar(x.astype(np.float64), 0, ddof=1), "float64")]
    if dtype == "bool":
        expected[2] = (np.nanmin(x, 1), "bool")  # NumPy's nanmin of bool is bool
    for g, (e, t) in zip(results(nxlua, f"local x = {lua_array(x)}", exprs), expected):
        same(g, e, t, rtol=1e-6 if dtype == "float32" else 1e-12)


def test_nan_results_of_all_nan_slices(nxlua):
    got = results(nxlua, "local x = array.from({{0/0, 0/0}, {1, 0/0}})",
                  ["x:nanmin(1)", "x:nanmax(1)", "x:nanmean(1)", "x:nansum(1)", "x:nanstd(1)"])
    for g in got[:3] + got[4:]:
        assert math.isnan(g[1][0]) and not math.isnan(g[1][1])
    same(got[3], [0.0, 1.0], "float64")


# MARK: running sums


@pytest.mark.parametrize("dtype", DTYPES)
def test_cumsum_cumprod_match_numpy(nxlua, dtype):
    x = sample(dtype, (3, 4, 5), seed=4)
    if dtype.startswith(("int", "uint")):
        x = (x % 5).astype(dtype)  # keep products small
    if dtype.startswith("float"):
        x = (x / 8).astype(dtype)  # no overflow in float32 products
    exprs, expected = [], []
    for lua, arr in (("x", x), ('x["::-1, 1:, ::2"]', x[::-1, 1:, ::2])):
        for op in ("cumsum", "cumprod"):
            f = getattr(np, op)
            exprs += [f"{lua}:{op}()", f"{lua}:{op}(0)", f"{lua}:{op}(1)", f"{lua}:{op}(-1)"]
            expected += [f(arr), f(arr, 0), f(arr, 1), f(arr, -1)]
    for g, e in zip(results(nxlua, f"local x = {lua_array(x)}", exprs), expected):
        same(g, e, e.dtype.name, rtol=1e-5 if dtype == "float32" else 1e-12)


def test_cumsum_of_large_arrays_on_threads(nxlua):
    out = run(nxlua, """
        local x = (array.arange(600):reshape({600, 1}) * 1000 + array.arange(1000)) % 7
        local c0, c1 = x:cumsum(0), x:cumsum(1)
        out(c0[599]:sum()); out(c1[":, 999"]:sum()); out(x:cumsum()[-1]); out(c0["-1, 0:5"])
    """)
    x = np.arange(600 * 1000).reshape(600, 1000) % 7
    got = [parse(line) for line in out.splitlines()]
    same(got[0], np.cumsum(x, 0)[599].sum(), "int64")
    same(got[1], np.cumsum(x, 1)[:, 999].sum(), "int64")
    same(got[2], np.cumsum(x)[-1], "int64")
    same(got[3], np.cumsum(x, 0)[-1, 0:5], "int64")


# MARK: histograms


def test_histogram_equal_bins_match_numpy(nxlua):
    rng = np.random.default_rng(5)
    x = rng.normal(100, 30, 5000)
    x[:5] = [0.0, 200.0, 50.0, 150.0, 100.0]  # values on edges
    xi = rng.integers(-2, 1000, (40, 50)).astype(np.int32)
    setup = f"local x = {lua_array(x)}\nlocal xi = {lua_array(xi)}\nlocal c, e"
    exprs = []
    for call in ["array.histogram(x, 10)", "x:histogram(7, {range = {0, 200}})", "array.histogram(x, 1)",
                 "xi:histogram(13)", "array.histogram(xi, 4, {range = {0, 999}})",
                 'array.histogram(xi["::-1, ::3"], 5)', "array.histogram(x, 20, {range = {50.5, 50.5}})"]:
        exprs += [f"(function() c, e = {call}; return c end)()", "e"]
    got = results(nxlua, setup, exprs)
    expected = [np.histogram(x, 10), np.histogram(x, 7, range=(0, 200)), np.histogram(x, 1), np.histogram(xi, 13),
                np.histogram(xi, 4, range=(0, 999)), np.histogram(xi[::-1, ::3], 5), np.histogram(x, 20, range=(50.5, 50.5))]
    for k, (counts, edges) in enumerate(expected):
        same(got[2 * k], counts, "int64")
        same(got[2 * k + 1], edges, "float64", rtol=0)


def test_histogram_edges_weights_density_nan(nxlua):
    x = np.array([0.0, 1.0, 1.0, 2.5, 3.0, 3.0, 7.0, -1.0, np.nan, 10.0])
    w = np.linspace(0.5, 5, 10)
    edges = [0, 1, 1, 2.5, 3, 10]
    setup = f"local x = {lua_array(x)}\nlocal w = {lua_array(w)}\nlocal c, e"
    calls = ["array.histogram(x, {0, 1, 1, 2.5, 3, 10})", "x:histogram(array.from({0, 1, 1, 2.5, 3, 10}), {weights = w})",
             "array.histogram(x, 4, {range = {0, 10}, density = true})", "array.histogram(x, 3, {range = {-1, 3}, weights = w})",
             "array.histogram(x, {0, 1, 1, 2.5, 3, 10}, {density = true})"]
    exprs = []
    for call in calls:
        exprs += [f"(function() c, e = {call}; return c end)()", "e"]
    got = results(nxlua, setup, exprs)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [(np.histogram(x, edges), "int64"), (np.histogram(x, edges, weights=w), "float64"),
                    (np.histogram(x, 4, range=(0, 10), density=True), "float64"),
                    (np.histogram(x, 3, range=(-1, 3), weights=w), "float64"),
                    (np.histogram(x, edges, density=True), "float64")]
    for k, ((counts, e), t) in enumerate(expected):
        same(got[2 * k], counts, t)
        same(got[2 * k + 1], e, "float64")


def test_histogram_given_edges_match_numpy_on_and_beside_every_edge(nxlua):
    """Given edges are found through a coarse table of equal cells, then bisection: values
    on each edge, one ulp either side, and random values must land as NumPy puts them."""
    rng = np.random.default_rng(9)
    edge_sets = [np.geomspace(1, 1e6, 40), np.array([0.0, 0.1, 0.1, 0.1, 5.0, 5.0, 7.25, 1e3]),
                 np.array([-np.inf, -1.0, 0.0, 1.0, np.inf]), np.sort(rng.uniform(-5, 5, 300)),
                 np.array([2.0, 2.0]), np.linspace(-3, 3, 7)]
    setup = ["local c, e"]
    exprs, expected = [], []
    for k, edges in enumerate(edge_sets):
        finite = edges[np.isfinite(edges)]
        x = np.concatenate([finite, np.nextafter(finite, -np.inf), np.nextafter(finite, np.inf),
                            rng.uniform(finite.min() - 1, finite.max() + 1, 2000), [np.nan, np.inf, -np.inf]])
        setup.append(f"local x{k} = {lua_array(x)}\nlocal e{k} = {lua_array(edges)}")
        exprs.append(f"(function() c, e = array.histogram(x{k}, e{k}); return c end)()")
        expected.append(np.histogram(x, edges)[0])
    for g, e in zip(results(nxlua, "\n".join(setup), exprs), expected):
        same(g, e, "int64")


def test_histogram_errors(nxlua):
    cases = {
        "array.histogram(array.from({1, 0/0, 3}), 5)": "the data contain NaN, so no range can be autodetected",
        "array.histogram(array.from({1, 2}), 0)": "histogram bins must be a positive integer, got 0",
        "array.histogram(array.from({1, 2}), {0, 2, 1})": "bin edges must increase monotonically: edge 1 is 2.0, edge 2 is 1.0",
        "array.histogram(array.from({1, 2}), 3, {range = {5, 1}})": "max must be larger than min, got [5.0, 1.0]",
        "array.histogram(array.from({1, 2}), 3, {rnage = {0, 1}})": "unknown option 'rnage' (known: density, range, weights)",
        "array.histogram(array.from({1, 2}), 3, {weights = array.ones(3)})": "weights (3,), data (2,)",
        "array.histogram(array.from({1, 2}), 'x')": "bins (integer, ndarray or table of edges) expected, got string",
        "array.histogram(array.from({1, 1/0}), 3)": "autodetected range of [1.0, inf] is not finite",
    }
    for code, message in cases.items():
        r = nxlua("-e", code)
        assert r.returncode == 1 and message in r.stderr, (code, r.stderr)


def test_histogram_of_a_pilatus_frame_in_one_pass(nxlua):
    """A 2.5 M pixel int32 frame: counts agree with NumPy's (threads, private histograms)."""
    out = run(nxlua, """
        local f = ((array.arange(1679):reshape({1679, 1}) * 1475 + array.arange(1475)) * 7919 % 10007 - 5):astype("int32")
        local c, e = f:histogram(50)
        out(c); out(e)
        c = f:histogram(100, {range = {0, 1000}})
        out(c)
    """)
    f = (np.arange(1679 * 1475).reshape(1679, 1475) * 7919 % 10007 - 5).astype(np.int32)
    got = [parse(line) for line in out.splitlines()]
    counts, edges = np.histogram(f, 50)
    same(got[0], counts, "int64")
    same(got[1], edges, "float64")
    same(got[2], np.histogram(f, 100, range=(0, 1000))[0], "int64")


# MARK: matrix products


@pytest.mark.parametrize("ta,tb", [("float64", "float64"), ("float32", "float32"), ("int32", "float32"),
                                   ("int64", "int64"), ("int8", "uint8"), ("bool", "bool"), ("uint64", "int64"),
                                   ("int16", "int16")])
def test_dot_matmul_match_numpy(nxlua, ta, tb):
    rng = np.random.default_rng(6)

    def make(t, shape):
        if t == "bool":
            return rng.integers(0, 2, shape).astype(bool)
        if t.startswith("float"):
            return rng.normal(0, 1, shape).astype(t)
        return rng.integers(0, 10, shape).astype(t)

    a, b, v, w = make(ta, (7, 9)), make(tb, (9, 5)), make(tb, (9,)), make(ta, (7,))
    big_a, big_b = make(ta, (37, 70)), make(tb, (70, 45))  # the blocked kernel, with edge tiles
    setup = "\n".join(f"local {n} = {lua_array(x)}" for n, x in
                      [("a", a), ("b", b), ("v", v), ("w", w), ("A", big_a), ("B", big_b)])
    exprs = ["array.matmul(a, b)", "a:dot(v)", "w:matmul(a)", "array.dot(v, v)", "A:matmul(B)",
             'array.matmul(A["::2, ::-1"], B["::-1, 3:"])', "b:matmul(b[0])"]
    expected = [a @ b, a.dot(v), w @ a, np.dot(v, v), big_a @ big_b, big_a[::2, ::-1] @ big_b[::-1, 3:], b @ b[0]]
    for g, e in zip(results(nxlua, setup, exprs), expected):
        single = np.asarray(e).dtype == np.float32  # float32 sums in another order: float32 rounding
        same(g, e, np.asarray(e).dtype.name, rtol=1e-5 if single else 1e-12, atol=1e-5 if single else 1e-12)


def test_matmul_errors_show_both_shapes(nxlua):
    r = nxlua("-e", "array.matmul(array.zeros({2, 3}), array.zeros(4))")
    assert "matmul: shapes (2, 3) and (4,) not aligned: 3 (dim 1) != 4 (dim 0)" in r.stderr
    r = nxlua("-e", "array.ones({2, 3}):dot(array.zeros({2, 3}))")
    assert "dot: shapes (2, 3) and (2, 3) not aligned: 3 (dim 1) != 2 (dim 0)" in r.stderr
    r = nxlua("-e", "array.matmul(array.zeros({2, 2, 2}), array.zeros({2, 2}))")
    assert "matmul: arrays of 1 or 2 dimensions are supported, got shapes (2, 2, 2) and (2, 2)" in r.stderr
    r = nxlua("-e", "array.matmul(array.zeros(3), 2)")
    assert "bad argument #2 to 'matmul' (ndarray expected, got number)" in r.stderr
    out = run(nxlua, "out(array.dot(array.from({2.5}):reshape({}), array.from({1, 2})))")
    same(parse(out.strip()), [2.5, 5.0], "float64")


# MARK: valid-pixel sums


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_valid_count_valid_mean_valid_match_numpy(nxlua, dtype):
    x = sample(dtype, (6, 5, 4), seed=8)
    if dtype in ("int8", "int16", "int32", "int64"):
        x[0, 1, :] = -1
        x[:, 2, 3] = -2
    if dtype.startswith("float"):
        x[1, 1, 1] = np.nan
    valid = (x >= 0) & ~np.isnan(x.astype(np.float64)) if x.dtype.kind == "f" else (x >= 0)
    acc = {"f": x.dtype, "u": np.uint64}.get(x.dtype.kind, np.int64)
    exprs, expected = [], []
    for lua, arr, ok in (("x", x, valid), ('x["::2, ::-1, 1:"]', x[::2, ::-1, 1:], valid[::2, ::-1, 1:])):
        kept = np.where(ok, arr, 0)
        for axis in (None, 0, (1, 2), -1):
            a = "nil" if axis is None else str(axis) if isinstance(axis, int) else "{" + ", ".join(map(str, axis)) + "}"
            exprs += [f"{lua}:sum_valid({a})", f"{lua}:count_valid({a})", f"{lua}:mean_valid({a}, true)"]
            with np.errstate(invalid="ignore"):
                expected += [(kept.sum(axis=axis, dtype=acc), np.dtype(acc).name),
                             (ok.sum(axis=axis), "int64"),
                             (kept.sum(axis=axis, dtype=np.float64, keepdims=True) / ok.sum(axis=axis, keepdims=True),
                              "float32" if dtype == "float32" else "float64")]
    for g, (e, t), expr in zip(results(nxlua, f"local x = {lua_array(x)}", exprs), expected, exprs):
        same(g, e, t, rtol=1e-6 if dtype == "float32" else 1e-12)


def test_sum_valid_of_a_pilatus_stack(nxlua):
    """Pilatus 2M geometry (1475 px wide, module gaps -1, dead pixels -2) on 5 frames of 424
    rows: the column-block SIMD path (4 frames per pass, then the rest), several blocks,
    threads; small enough for the sanitized debug binary."""
    out = run(nxlua, """
        local i = array.arange(5):reshape({5, 1, 1}) * (424 * 1475) + array.arange(424):reshape({424, 1}) * 1475 + array.arange(1475)
        local s = (i * 2654435761 // 1048576 % 65536):astype("int32")
        s[":, 195:212, :"] = -1; s[":, 407:424, :"] = -1
        s[":, :, 487:494"] = -1; s[":, :, 981:988"] = -1
        s["0, 10, 10"] = -2; s["4, 300, 1400"] = -2; s["3, 5, 7"] = -2
        out(s:sum_valid(0):sum()); out(s:count_valid(0):sum()); out(s:sum_valid({1, 2})); out(s:sum_valid())
        out(s:sum_valid(0)["100:103, 480:500"]); out(s:count_valid()); out(s:mean_valid(0)["10, 8:12"])
    """)
    s = (np.arange(5 * 424 * 1475, dtype=np.int64).reshape(5, 424, 1475) * 2654435761 // 1048576 % 65536).astype(np.int32)
    s[:, 195:212, :] = -1
    s[:, 407:424, :] = -1
    s[:, :, 487:494] = -1
    s[:, :, 981:988] = -1
    s[0, 10, 10] = s[4, 300, 1400] = s[3, 5, 7] = -2
    ok = s >= 0
    kept = np.where(ok, s, 0)
    got = [parse(line) for line in out.splitlines()]
    same(got[0], kept.sum(dtype=np.int64), "int64")
    same(got[1], ok.sum(), "int64")
    same(got[2], kept.sum((1, 2), dtype=np.int64), "int64")
    same(got[3], kept.sum(dtype=np.int64), "int64")
    same(got[4], kept.sum(0, dtype=np.int64)[100:103, 480:500], "int64")
    same(got[5], ok.sum(), "int64")
    same(got[6], kept[:, 10, 8:12].sum(0) / ok[:, 10, 8:12].sum(0), "float64")


def test_help_lists_the_new_operations(nxlua):
    out = run(nxlua, """
        local docs = package.loaded["nxlua.docs"].names
        for _, n in ipairs({"array.histogram", "array.dot", "array.matmul", "ndarray:sum_valid", "ndarray:argmax",
                            "ndarray:nanstd", "ndarray:cumsum"}) do
          local d = docs[n]; print(n, d and d.signature or "MISSING")
        end
    """)
    assert "MISSING" not in out, out
    assert "a:sum_valid([axis [, keepdims]]) -> number|array" in out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matmul_with_and_without_openblas(nxlua, dtype):
    # Large float products go to OpenBLAS when it loads; NXLUA_OPENBLAS=0 uses nxlua's own
    # kernel. Both agree with NumPy.
    def make(m, n, p, q):
        i, j = np.arange(m).reshape(m, 1), np.arange(n).reshape(1, n)
        return ((i * p + j * q) % 101 / 101 - 0.5).astype(dtype)
    script = f"""
        local function make(m, n, p, q)
          local i, j = array.arange(m):reshape({{m, 1}}), array.arange(n):reshape({{1, n}})
          return ((i * p + j * q) % 101 / 101 - 0.5):astype("{dtype}")
        end
        local c = make(64, 130, 7, 3):matmul(make(130, 33, 5, 11))
        for i = 0, c.shape[1] - 1 do print(table.concat(c[i]:totable(), ' ')) end
    """
    expected = make(64, 130, 7, 3).astype(np.float64) @ make(130, 33, 5, 11).astype(np.float64)
    tol = 1e-4 if dtype == "float32" else 1e-12
    for setting in ("1", "0"):
        r = nxlua("-e", script, extra_env={"NXLUA_OPENBLAS": setting})
        assert r.returncode == 0, r.stderr
        got = np.array([[float(x) for x in line.split()] for line in r.stdout.splitlines()])
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
    r = nxlua("--version")
    assert "OpenBLAS 0." in r.stdout  # scripts/setup installs it
