#!/usr/bin/env nxlua
-- Sums the frames of a file served by `nxlua serve` (or HSDS) two ways: streamed to this
-- machine block by block, and on the server with r:eval (only the image travels back).
-- Usage: NXLUA_PASSWORD=... nxlua remote_sum.lua URL USER DOMAIN
--   e.g. nxlua remote_sum.lua http://beamline:5101 ray /sample_300K.nxs
local url, user, domain = arg[1], arg[2], arg[3]
if not domain then
  io.stderr:write("usage: nxlua remote_sum.lua URL USER DOMAIN\n")
  os.exit(2)
end
local r = nx.remote(url, { user = user })      -- password: $NXLUA_PASSWORD, else a prompt
local g = r:load(domain)
g:tree("short")
local d = g:default()
local signal = d.nxsignal
print(signal.nxpath, table.concat(signal.shape, "x"), signal.dtype)

local t = nxlua.time()
local here = signal:sum(0)                       -- blocks of rows over HTTP
print(string.format("streamed sum: total %s in %.2f s", tostring(here:sum()), nxlua.time() - t))

t = nxlua.time()
local ok, there = pcall(r.eval, r, [[
  local a = ...
  return nx.load(a.domain)[a.path]:sum(0)
]], { domain = domain, path = signal.nxpath })
if ok then
  print(string.format("server sum:   total %s in %.2f s", tostring(there:sum()), nxlua.time() - t))
else
  print("server sum not available: " .. tostring(there))  -- HSDS, or a server without --allow-eval
end
