"""The script runner and the command line, as `lua` behaves."""
import os
import shutil
import subprocess
import textwrap

from conftest import BIN, ROOT


def test_version_names_the_libraries(nxlua):
    r = nxlua("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("nxlua ")
    for lib in ("Lua 5.4", "HDF5 1.10", "libtiff 4", "cbflib libcbf.so.1"):
        assert lib in r.stdout


def test_lua_c_module_loads_with_require(nxlua, tmp_path):
    """A Lua C module built as Debian builds them (not linked against liblua: the host
    provides the Lua API) loads with require and shares nxlua's Lua state. Guards the
    release link: a Lua linked in without its API exported would break every C module."""
    src = tmp_path / "twice.c"
    src.write_text(textwrap.dedent("""\
        #include <lua5.4/lua.h>
        #include <lua5.4/lauxlib.h>
        static int twice(lua_State *L) { lua_pushnumber(L, 2 * luaL_checknumber(L, 1)); return 1; }
        int luaopen_twice(lua_State *L) {
            lua_newtable(L);
            lua_pushcfunction(L, twice);
            lua_setfield(L, -2, "twice");
            return 1;
        }
        """))
    # the system's C compiler, or the Swift toolchain's clang (it builds nxlua's C targets)
    compiler = shutil.which("cc") or shutil.which("clang") or "/opt/swift/usr/bin/clang"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(tmp_path / "twice.so"), str(src)], check=True)
    r = nxlua("-e", f"package.cpath = '{tmp_path}/?.so'; local t = require('twice'); "
                    "print(t.twice(21)); "
                    "print(pcall(t.twice, 'x'))")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "42.0"
    assert lines[1].startswith("false\t") and "number expected" in lines[1]


def test_help_shows_usage(nxlua):
    r = nxlua("--help")
    assert r.returncode == 0
    assert "usage: nxlua [options] [script [args]]" in r.stdout
    assert "-e stat" in r.stdout


def test_unknown_option_is_a_usage_error(nxlua):
    r = nxlua("-x")
    assert r.returncode == 1
    assert "unrecognized option '-x'" in r.stderr
    assert "usage:" in r.stderr


def test_execute_and_arg_table(nxlua):
    r = nxlua("-e", "print(1 + 1, #arg, arg[0] ~= nil)")
    assert r.returncode == 0
    assert r.stdout == "2\t2\ttrue\n"


def test_several_e_run_in_order(nxlua):
    r = nxlua("-e", "x = 20", "-e", "print(x + 1)")
    assert r.stdout == "21\n"


def test_script_gets_arg_and_varargs(nxlua, tmp_path):
    script = tmp_path / "s.lua"
    script.write_text("print(arg[0], arg[1], arg[2], arg[-1], select('#', ...), ...)\n")
    r = nxlua("-W", str(script), "a", "b c")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{script}\ta\tb c\t-W\t2\ta\tb c\n"


def test_shebang_line_is_skipped(nxlua, tmp_path):
    script = tmp_path / "run.lua"
    script.write_text(f"#!{BIN}\nprint('ran', ...)\n")
    script.chmod(0o755)
    r = nxlua(str(script), "x")
    assert r.stdout == "ran\tx\n"


def test_script_error_exits_1_with_traceback(nxlua, tmp_path):
    script = tmp_path / "bad.lua"
    script.write_text("local function f()\n  error('broken on purpose')\nend\nf()\n")
    r = nxlua("bad.lua", cwd=str(tmp_path))  # short name: Lua shortens long chunk names
    assert r.returncode == 1
    assert "nxlua: bad.lua:2: broken on purpose" in r.stderr
    assert "stack traceback:" in r.stderr
    assert "in local 'f'" in r.stderr or "in function 'f'" in r.stderr


def test_syntax_error_in_script(nxlua, tmp_path):
    script = tmp_path / "syntax.lua"
    script.write_text("x = = 1\n")
    r = nxlua(str(script))
    assert r.returncode == 1
    assert "syntax.lua:1:" in r.stderr and "unexpected symbol" in r.stderr


def test_missing_script(nxlua, tmp_path):
    r = nxlua(str(tmp_path / "nope.lua"))
    assert r.returncode == 1
    assert "cannot open" in r.stderr and "nope.lua" in r.stderr


def test_error_in_e_chunk(nxlua):
    r = nxlua("-e", "error('bad')")
    assert r.returncode == 1
    assert "nxlua: (command line):1: bad" in r.stderr


def test_l_requires_a_module_from_nxlua_path(nxlua, tmp_path):
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "beam.lua").write_text("return { energy = 12.4 }\n")
    env = {"NXLUA_PATH": str(mods)}
    r = nxlua("-l", "beam", "-e", "print(beam.energy)", extra_env=env)
    assert r.stdout == "12.4\n", r.stderr
    r = nxlua("-l", "b=beam", "-e", "print(b.energy)", extra_env=env)
    assert r.stdout == "12.4\n", r.stderr
    r = nxlua("-lbeam", "-e", "print(beam.energy)", extra_env=env)
    assert r.stdout == "12.4\n", r.stderr
    r = nxlua("-l", "nosuchmodule")
    assert r.returncode == 1 and "module 'nosuchmodule' not found" in r.stderr


def test_stdlib_found_wherever_the_binary_runs_from(nxlua, tmp_path):
    r = nxlua("-e", "print(require('nxlua.pretty').format({1, 'a'}))", cwd=str(tmp_path))
    assert r.stdout == '{1, "a"}\n', r.stderr


def test_dash_runs_stdin_as_a_script(nxlua):
    r = nxlua("-", "x", stdin="print('from stdin', ...)\n")
    assert r.stdout == "from stdin\tx\n"


def test_interactive_after_script(nxlua, tmp_path):
    script = tmp_path / "setup.lua"
    script.write_text("energy = 12.4\n")
    r = nxlua("-i", str(script), stdin="energy * 2\n")
    assert r.returncode == 0, r.stderr
    assert "24.8" in r.stdout


def test_nxlua_init_and_E(nxlua):
    r = nxlua("-e", "print(greeting)", extra_env={"NXLUA_INIT": "greeting = 'hi'"})
    assert r.stdout == "hi\n"
    r = nxlua("-E", "-e", "print(greeting)", extra_env={"NXLUA_INIT": "greeting = 'hi'"})
    assert r.stdout == "nil\n"


def test_os_exit_status(nxlua):
    assert nxlua("-e", "os.exit(3)").returncode == 3
    assert nxlua("-e", "os.exit(true)").returncode == 0


def test_close_variables_run_at_exit_of_script(nxlua, tmp_path):
    script = tmp_path / "c.lua"
    script.write_text(textwrap.dedent("""
        do
          local x <close> = setmetatable({}, {__close = function() print('closed') end})
        end
        print('after')
    """))
    r = nxlua(str(script))
    assert r.stdout == "closed\nafter\n"


def test_sleep_and_time(nxlua):
    r = nxlua("-e", "local t = nxlua.time(); nxlua.sleep(0.05); print(nxlua.time() - t >= 0.05)")
    assert r.stdout == "true\n", r.stderr
    r = nxlua("-e", "nxlua.sleep(-1)")
    assert r.returncode == 1
    assert "bad argument #1 to 'sleep' (non-negative number of seconds expected, got -1.0)" in r.stderr


def test_listdir(nxlua, tmp_path):
    (tmp_path / "b.cbf").write_text("")
    (tmp_path / "a.cbf").write_text("")
    r = nxlua("-e", f"print(table.concat(nxlua.listdir('{tmp_path}'), ','))")
    assert "a.cbf,b.cbf" in r.stdout
    r = nxlua("-e", "print(nxlua.listdir('/no/such/folder'))")
    assert r.stdout == "nil\t/no/such/folder: No such file or directory\n"


def test_example_newest(nxlua, tmp_path):
    for i in range(5):
        (tmp_path / f"frame_{i:05d}.cbf").write_text("")
    (tmp_path / "sub").mkdir()
    script = str(ROOT / "scripts/examples/newest.lua")
    r = nxlua(script, str(tmp_path), "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "frame_00003.cbf\nframe_00004.cbf\n"
    assert "2 of 5 files" in r.stderr
    r = nxlua(script)
    assert r.returncode == 2 and "usage:" in r.stderr
