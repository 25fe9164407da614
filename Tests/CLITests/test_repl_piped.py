"""The REPL reading piped stdin: same evaluation as on a terminal, no prompts."""


def test_expressions_print_their_values(nxlua):
    r = nxlua(stdin="1 + 1\n'text'\nnil\n{1, 2, x = 'y'}\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == '2\n"text"\nnil\n{1, 2, x = "y"}\n'


def test_statements_equals_and_several_values(nxlua):
    r = nxlua(stdin="x = 5\n=x * 2\nreturn x, x + 1\n")
    assert r.stdout == "10\n5\t6\n"


def test_incomplete_statement_continues(nxlua):
    r = nxlua(stdin="for i = 1, 3 do\n  print(i)\nend\nfunction f(a)\nreturn a * 3\nend\nf(2)\n")
    assert r.stdout == "1\n2\n3\n6\n", r.stderr


def test_error_prints_traceback_and_goes_on(nxlua):
    r = nxlua(stdin="error('first')\nprint('still here')\n")
    assert "stdin:1: first" in r.stderr
    assert "stack traceback:" in r.stderr
    assert r.stdout == "still here\n"
    assert r.returncode == 1  # a failed chunk makes piped input fail at the end


def test_syntax_error_reported(nxlua):
    r = nxlua(stdin="x = = 2\nprint('ok')\n")
    assert "unexpected symbol" in r.stderr
    assert r.stdout == "ok\n"


def test_unfinished_statement_at_end_of_input(nxlua):
    r = nxlua(stdin="for i = 1, 2 do\n")
    assert "'end' expected" in r.stderr
    assert r.returncode == 1


def test_help_lists_modules_and_function_docs(nxlua):
    r = nxlua(stdin="help()\nhelp(nxlua.sleep)\nhelp('nxlua.time')\nhelp(string.rep)\n")
    assert "nxlua modules:" in r.stdout
    assert "nxlua.sleep(seconds)\n  waits; Ctrl-C interrupts the wait" in r.stdout
    assert "nxlua.time() -> seconds" in r.stdout
    assert "string.rep: a Lua standard function" in r.stdout
    assert "index from 0" in r.stdout


def test_documented_functions_print_their_signature(nxlua):
    r = nxlua(stdin="nxlua.sleep\nnxlua\n")
    assert "function nxlua.sleep(seconds)" in r.stdout
    assert "module nxlua:" in r.stdout


def test_pretty_printer_handles_cycles_and_depth(nxlua):
    r = nxlua(stdin="t = {1}; t.self = t\nt\n{a = {b = {c = {d = 1}}}}\n")
    assert "self = <cycle>" in r.stdout
    assert "{a = {b = {c = {...}}}}" in r.stdout


def test_pretty_printer_is_extended_by_pretty_metamethod(nxlua):
    r = nxlua(stdin="setmetatable({}, {__pretty = function() return 'Frame(512x512)' end})\n")
    assert r.stdout == "Frame(512x512)\n"


def test_help_alone_lists_the_modules(nxlua):
    r = nxlua(stdin="help\nhelp(help)\n")
    assert r.stdout.startswith("nxlua 0.1.0: Lua 5.4 for NeXus/HDF5 data.")
    assert "nxlua modules:\n  nxlua" in r.stdout
    assert "help([x])" in r.stdout


def test_help_of_a_method_value(nxlua):
    # Methods reached through an object are documented like module functions.
    r = nxlua(stdin="a = array.zeros({2})\nhelp(a.sum)\nhelp(a.reshape)\n")
    assert "a:sum([axis [, keepdims]]) -> array|number" in r.stdout
    assert "reshape" in r.stdout.split("\n", 2)[2]
    assert "no help" not in r.stdout
