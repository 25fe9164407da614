-- nxlua.help: the text of help(), taken from the binding declarations (nxlua.docs) and,
-- for Lua's own functions, a one-line summary with a pointer to the manual.
local docs = require "nxlua.docs"

local lua_libraries = {
  { "string", "string operations: format, find, gsub, pack/unpack, ..." },
  { "table", "table operations: insert, remove, sort, concat, move, unpack" },
  { "math", "math functions and constants; math.type tells integer from float" },
  { "io", "files and standard streams" },
  { "os", "time, date, clock, getenv, remove, rename, exit" },
  { "utf8", "UTF-8 helpers" },
  { "coroutine", "coroutines" },
  { "debug", "the debug library" },
}

-- Text is collected and written once, so that the same text can also be returned.
local out
local function write(...)
  for i = 1, select("#", ...) do out[#out + 1] = tostring((select(i, ...))) end
end

local function show_entry(e)
  write(e.signature, "\n")
  if e.summary ~= "" then write("  ", e.summary, "\n") end
  if e.help ~= "" then write("\n", (e.help:gsub("^", "  "):gsub("\n", "\n  ")), "\n") end
  if e.members and #e.members > 0 then
    write("\n")
    local width = 0
    for _, m in ipairs(e.members) do width = math.max(width, #m) end
    for _, m in ipairs(e.members) do
      local me = docs.names[m]
      write(string.format("  %-" .. width .. "s  %s\n", m, me and me.summary or ""))
    end
  end
end

local function overview()
  write("nxlua ", nxlua and nxlua.version or "", ": Lua 5.4 for NeXus/HDF5 data.\n")
  write("Fields and arrays index from 0, half-open, NumPy style; Lua tables from 1.\n\n")
  write("nxlua modules:\n")
  local width = 8
  for _, m in ipairs(docs.modules) do width = math.max(width, #m.name) end
  for _, l in ipairs(lua_libraries) do width = math.max(width, #l[1]) end
  for _, m in ipairs(docs.modules) do
    write(string.format("  %-" .. width .. "s  %s\n", m.name, m.summary))
  end
  write("\nLua's libraries (see the Lua 5.4 reference manual):\n")
  for _, l in ipairs(lua_libraries) do
    write(string.format("  %-" .. width .. "s  %s\n", l[1], l[2]))
  end
  write("\nhelp(x) shows the docs of a module, function or object; help(\"nxlua.sleep\") by name.\n")
end

-- The qualified name of one of Lua's own functions ("string.format"), if it is one.
local function lua_name(v)
  for name, value in pairs(_G) do
    if value == v then return name end
  end
  for _, l in ipairs(lua_libraries) do
    local lib = _G[l[1]]
    if type(lib) == "table" then
      for name, value in pairs(lib) do
        if value == v then return l[1] .. "." .. name end
      end
    end
  end
end

local function resolve(name)
  local v = _G
  for part in name:gmatch("[^%.]+") do
    if type(v) ~= "table" then return nil end
    v = rawget(v, part)
  end
  return v
end

local function show(...)
  if select("#", ...) == 0 then return overview() end
  local x = ...
  local entry
  if type(x) == "string" then
    entry = docs.names[x]
    if not entry then
      local v = resolve(x)
      if v ~= nil then entry = docs.values[v] else
        write("no help for '", x, "'\n")
        return
      end
      x = v
    end
  end
  entry = entry or docs.values[x]
  if not entry and (type(x) == "userdata" or type(x) == "table") then
    local mt = getmetatable(x)
    local name = type(mt) == "table" and rawget(mt, "__name")
    if name then entry = docs.names[name] end
  end
  if entry then return show_entry(entry) end
  if type(x) == "function" then
    local name = lua_name(x)
    if name then
      write(name, ": a Lua standard function; see the Lua 5.4 reference manual.\n")
      return
    end
  end
  if type(x) == "table" then
    for _, l in ipairs(lua_libraries) do
      if _G[l[1]] == x then write(l[1], ": ", l[2], " (the Lua 5.4 reference manual).\n") return end
    end
  end
  write("no help for this ", type(x), "\n")
end

local M = {}

--- The help text for x (or the overview with no argument), as a string.
function M.text(...)
  out = {}
  show(...)
  local text = table.concat(out)
  out = nil
  return text
end

--- Prints the help text (what help(...) does).
function M.show(...)
  io.write(M.text(...))
end

--- Makes the global `help` an object: calling it shows help, and typing `help` alone at
--- the REPL lists the modules (as Python's help object prints its usage).
function M.install()
  local fn = _G.help
  if type(fn) ~= "function" then return end
  local object = setmetatable({}, {
    __name = "help",
    __call = function(_, ...) return fn(...) end,
    __pretty = function() return (M.text():gsub("\n$", "")) end,
    __tostring = function() return "help: call help() or help(x)" end,
  })
  docs.values[object] = docs.values[fn]
  _G.help = object
end

return M
