--[[
  Reading an invalidation's arguments, shared by invalidate.lua and
  invalidate_insideout.lua (the layout is described in invalidate.lua).
]]

--- The tables from ARGV[2] on: {name, whole (the whole table), rows}. A row stays
--- the text it came as (`&f=t&g=u`, with a leading '&'): conj_key_of finds only the
--- fields a scheme needs in it, which costs less than splitting every field of every row.
local function invalidated_tables()
  local tables = {}
  local i = 2
  for _ = 1, tonumber(ARGV[i]) do
    local n_rows = tonumber(ARGV[i + 2])
    local entry = {name = ARGV[i + 1], whole = n_rows < 0, rows = {}}
    i = i + 2
    for r = 1, math.max(n_rows, 0) do
      entry.rows[r] = '&' .. ARGV[i + r]
    end
    i = i + math.max(n_rows, 0)
    tables[#tables + 1] = entry
  end
  return tables
end

--- The fields of a scheme ("f,g"; "" is the scheme of "every row"), each with the
--- text that starts it in a row ("&f=").
local function scheme_fields(scheme)
  local fields = {}
  for field in string.gmatch(scheme, '[^,]+') do
    fields[#fields + 1] = {name = field, needle = '&' .. field .. '='}
  end
  return fields
end

--- The conj key a row falls in under a scheme, or nil when the row lacks one of its fields.
--- Escaped fields and tokens hold no '&' or '=', so "&f=" can only start field f.
local function conj_key_of(ns, tbl, fields, row)
  local parts = {}
  for _, field in ipairs(fields) do
    local _, at = string.find(row, field.needle, 1, true)
    if at == nil then
      return nil
    end
    local stop = string.find(row, '&', at + 1, true)
    parts[#parts + 1] = field.name .. '=' .. string.sub(row, at + 1, stop and stop - 1 or -1)
  end
  return ns .. 'conj:' .. tbl .. ':' .. table.concat(parts, '&')
end
