-- nxlua.complete: tab completion for the REPL.
--
-- complete(text_before_cursor) -> word_length, candidates
--   Completes globals, dotted and colon paths (string.fo<TAB>, f.entry.da<TAB>,
--   s:up<TAB>), and file names inside a string argument of the functions listed in
--   M.path_arguments (dofile(", io.open(", later nx.load(").
-- Types extend it through their metatable: __methods (a table) and __complete
-- (a function(value) returning a list of names, e.g. a group's children).

local M = {}

--- Functions whose string argument is a file path: completes file names inside it.
M.path_arguments = { ["dofile"] = true, ["loadfile"] = true, ["io.open"] = true, ["io.lines"] = true, ["nx.load"] = true }

local keywords = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
  repeat return then true until while]]):gmatch("%a+") do keywords[#keywords + 1] = w end

local function add_keys(set, t, depth)
  if type(t) ~= "table" or depth > 3 then return end
  for k in next, t do
    if type(k) == "string" and k:match("^[%a_][%w_]*$") then set[k] = true end
  end
  local mt = getmetatable(t)
  if type(mt) == "table" and type(rawget(mt, "__index")) == "table" then
    add_keys(set, rawget(mt, "__index"), depth + 1)
  end
end

-- The names reachable from value v after "." (all) or ":" (methods only).
local function members(v, methods_only)
  local set = {}
  local tv = type(v)
  if tv == "table" then
    add_keys(set, v, 0)
  elseif tv == "string" then
    add_keys(set, string, 0)
  end
  local mt = getmetatable(v)
  if type(mt) == "table" then
    if tv ~= "table" and type(rawget(mt, "__index")) == "table" then add_keys(set, rawget(mt, "__index"), 0) end
    if type(rawget(mt, "__methods")) == "table" then add_keys(set, rawget(mt, "__methods"), 0) end
    local more = rawget(mt, "__complete")
    if type(more) == "function" and not methods_only then
      local ok, names = pcall(more, v)
      if ok and type(names) == "table" then
        for _, n in ipairs(names) do
          if type(n) == "string" then set[n] = true end
        end
      end
    end
  end
  local list = {}
  for k in pairs(set) do
    if not methods_only then
      list[#list + 1] = k
    else
      local ok, f = pcall(function() return v[k] end)
      if ok and (type(f) == "function" or (type(getmetatable(f)) == "table" and getmetatable(f).__call)) then
        list[#list + 1] = k
      end
    end
  end
  table.sort(list)
  return list
end

-- Evaluates a plain path "a.b.c" (indexing only, no calls) safely.
local function evaluate(path)
  if not path:match("^[%a_][%w_]*[%w_%.]*$") or path:find("%.%.") then return nil end
  local chunk = load("return " .. path, "=complete", "t", _G)
  if not chunk then return nil end
  local ok, v = pcall(chunk)
  if ok then return v end
end

local function complete_path_argument(text)
  -- text ends inside a string literal opened right after fname( : complete a file name
  local fname, partial = text:match("([%a_][%w_%.:]*)%s*%(%s*[\"']([^\"']*)$")
  if not fname or not M.path_arguments[fname:gsub(":", ".")] then return nil end
  local dir, base = partial:match("^(.*/)([^/]*)$")
  dir, base = dir or "", base or partial
  local listing = nxlua and nxlua.listdir and nxlua.listdir(dir == "" and "." or dir)
  if not listing then return #partial, {} end
  local out = {}
  for _, name in ipairs(listing) do
    if name:sub(1, #base) == base and (base:sub(1, 1) == "." or name:sub(1, 1) ~= ".") then
      local full = dir .. name
      if nxlua.isdir(full) then full = full .. "/" end
      out[#out + 1] = full
    end
  end
  return #partial, out
end

function M.complete(text)
  local n, list = complete_path_argument(text)
  if n then return n, list end
  local word = text:match("[%a_][%w_%.:]*$") or ""
  if word == "" then return 0, {} end
  local prefix, sep, partial = word:match("^(.-)([%.:])([%w_]*)$")
  local out = {}
  if not prefix then
    local set = {}
    add_keys(set, _G, 0)
    for _, k in ipairs(keywords) do set[k] = true end
    for k in pairs(set) do
      if k:sub(1, #word) == word then out[#out + 1] = k end
    end
  else
    if prefix:find(":") then return 0, {} end  -- a:b:c is not a path
    local v = evaluate(prefix)
    if v == nil then return 0, {} end
    for _, k in ipairs(members(v, sep == ":")) do
      if k:sub(1, #partial) == partial then out[#out + 1] = prefix .. sep .. k end
    end
  end
  table.sort(out)
  return #word, out
end

return setmetatable(M, { __call = function(_, text) return M.complete(text) end })
