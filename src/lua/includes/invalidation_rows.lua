--[[
  Reading an invalidation's arguments, shared by invalidate.lua and
  invalidate_insideout.lua (the layout is described in invalidate.lua).
]]

--- The tables from ARGV[2] on: {name, whole (the whole table), rows (field -> token)}.
local function invalidated_tables()
  local tables = {}
  local i = 2
  for _ = 1, tonumber(ARGV[i]) do
    local n_rows = tonumber(ARGV[i + 2])
    local entry = {name = ARGV[i + 1], whole = n_rows < 0, rows = {}}
    i = i + 2
    for r = 1, math.max(n_rows, 0) do
      local row = {}
      -- Escaped fields and tokens hold no '&' or '='.
      for field, token in string.gmatch(ARGV[i + r], '([^&=]+)=([^&]*)') do
        row[field] = token
      end
      entry.rows[r] = row
    end
    i = i + math.max(n_rows, 0)
    tables[#tables + 1] = entry
  end
  return tables
end

--- The fields of a scheme ("f,g"; "" is the scheme of "every row").
local function scheme_fields(scheme)
  local fields = {}
  for field in string.gmatch(scheme, '[^,]+') do
    fields[#fields + 1] = field
  end
  return fields
end

--- The conj key a row falls in under a scheme, or nil when the row lacks one of its fields.
local function conj_key_of(ns, tbl, fields, row)
  local parts = {}
  for _, field in ipairs(fields) do
    local token = row[field]
    if token == nil then
      return nil
    end
    parts[#parts + 1] = field .. '=' .. token
  end
  return ns .. 'conj:' .. tbl .. ':' .. table.concat(parts, '&')
end
