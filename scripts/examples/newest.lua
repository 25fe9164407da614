#!/usr/bin/env nxlua
-- Lists the newest N files of a data folder (by name order, as detectors number frames),
-- with the time it took. Usage: nxlua newest.lua FOLDER [N]
local folder, n = arg[1], tonumber(arg[2] or "10")
if not folder then
  io.stderr:write("usage: nxlua newest.lua FOLDER [N]\n")
  os.exit(2)
end
local t0 = nxlua.time()
local names, err = nxlua.listdir(folder)
if not names then
  io.stderr:write(err, "\n")
  os.exit(1)
end
local files = {}
for _, name in ipairs(names) do
  if not nxlua.isdir(folder .. "/" .. name) then files[#files + 1] = name end
end
for i = math.max(1, #files - n + 1), #files do print(files[i]) end
io.stderr:write(string.format("%d of %d files in %.1f ms\n", math.min(n, #files), #files,
  (nxlua.time() - t0) * 1e3))
