-- nxlua.pretty: how the REPL shows values.
--
-- Types extend it with a __pretty metamethod: function(value, options) -> string.
-- (NeXus trees and arrays do.) Everything else falls back to tostring, which honours
-- __tostring and __name. Tables print as Lua constructors, nested up to a depth.
--
--   local pretty = require "nxlua.pretty"
--   print(pretty.format({1, 2, x = {y = "z"}}))   --> {1, 2, x = {y = "z"}}
--   pretty.options.depth = 5                       -- show deeper tables in the REPL

local M = {}

M.options = {
  depth = 3,    -- nesting shown before "{...}"
  items = 50,   -- entries shown per table before "..."
  width = 80,   -- a table longer than this on one line is printed one entry per line
}

local keywords = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
  repeat return then true until while]]):gmatch("%a+") do keywords[w] = true end

local function isidentifier(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil and not keywords[s]
end

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

--- A string as a Lua literal that reads well: "a\tb", with control bytes escaped.
function M.quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\%03d", c:byte())
  end) .. '"'
end

local function docs_of(v)
  local ok, docs = pcall(require, "nxlua.docs")
  return ok and docs.values[v] or nil
end

local format

local function sortkeys(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local function format_table(t, opts, depth, seen, indent)
  if seen[t] then return "<cycle>" end
  local doc = docs_of(t)
  if doc and doc.kind == "module" then return "module " .. doc.name .. ": " .. doc.summary end
  if depth >= opts.depth then return next(t) == nil and "{}" or "{...}" end
  seen[t] = true
  local parts, n = {}, #t
  local shown = 0
  for i = 1, n do
    shown = shown + 1
    if shown > opts.items then break end
    parts[#parts + 1] = format(rawget(t, i), opts, depth + 1, seen, indent .. "  ")
  end
  local keys = {}
  for k in next, t do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, sortkeys)
  for _, k in ipairs(keys) do
    shown = shown + 1
    if shown > opts.items then break end
    local key = isidentifier(k) and k or "[" .. format(k, opts, opts.depth, seen, indent) .. "]"
    parts[#parts + 1] = key .. " = " .. format(rawget(t, k), opts, depth + 1, seen, indent .. "  ")
  end
  seen[t] = nil
  local total = n + #keys
  if total > opts.items then parts[#parts + 1] = "... (" .. total .. " entries)" end
  if #parts == 0 then return "{}" end
  local line = "{" .. table.concat(parts, ", ") .. "}"
  if #line + #indent <= opts.width and not line:find("\n") then return line end
  return "{\n" .. indent .. "  " .. table.concat(parts, ",\n" .. indent .. "  ") .. "\n" .. indent .. "}"
end

format = function(v, opts, depth, seen, indent)
  local t = type(v)
  if t == "string" then return M.quote(v) end
  if t == "table" then
    local mt = getmetatable(v)
    if type(mt) == "table" and rawget(mt, "__pretty") then
      local ok, s = pcall(rawget(mt, "__pretty"), v, opts)
      if ok and type(s) == "string" then return s end
    end
    if type(mt) == "table" and rawget(mt, "__tostring") then return tostring(v) end
    return format_table(v, opts, depth, seen, indent)
  end
  if t == "userdata" then
    local mt = getmetatable(v)
    local f = type(mt) == "table" and rawget(mt, "__pretty")
    if f then
      local ok, s = pcall(f, v, opts)
      if ok and type(s) == "string" then return s end
    end
  end
  if t == "function" then
    local doc = docs_of(v)
    if doc then return "function " .. doc.signature end
  end
  return tostring(v)
end

--- The text the REPL shows for a value.
function M.format(v, opts)
  opts = setmetatable(opts or {}, { __index = M.options })
  return format(v, opts, 0, {}, "")
end

--- Prints values as the REPL does: one line, tab-separated, unless one is multi-line.
function M.print(...)
  local n = select("#", ...)
  local parts, multiline = {}, false
  for i = 1, n do
    parts[i] = M.format((select(i, ...)))
    if parts[i]:find("\n") then multiline = true end
  end
  io.write(table.concat(parts, multiline and "\n" or "\t"), "\n")
end

return M
