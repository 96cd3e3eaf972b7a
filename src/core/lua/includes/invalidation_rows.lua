--[[
  Reading an invalidation's arguments, shared by invalidate.lua and
  invalidate_insideout.lua (the layout is described in invalidate.lua).
]]

--- The tables of the call: {name, whole (the whole table), rows, schemes_key,
--- gen_key (insideout), conj_prefix, index_prefix (unless insideout)}. A row stays
--- the text it came as (`&f=t&g=u`, with a leading '&'): conj_key_of finds only the
--- fields a scheme needs in it, which costs less than splitting every field of every row.
--- blocks: how many per-table blocks precede the rows (4 with index prefixes, 3 without).
--- Also returns the index of the first argument after the rows.
local function invalidated_tables(blocks)
  local n = tonumber(ARGV[1])
  local tables = {}
  local row_at = 2 + blocks * n
  for t = 1, n do
    local n_rows = tonumber(ARGV[1 + n + t])
    local entry = {
      name = ARGV[1 + t], whole = n_rows < 0, rows = {},
      schemes_key = KEYS[2 + t], gen_key = KEYS[2 + n + t],
      conj_prefix = ARGV[1 + 2 * n + t], index_prefix = blocks > 3 and ARGV[1 + 3 * n + t] or nil,
    }
    for r = 1, math.max(n_rows, 0) do
      entry.rows[r] = '&' .. ARGV[row_at]
      row_at = row_at + 1
    end
    tables[t] = entry
  end
  return tables, row_at
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

--- The conj key a row falls in under a scheme (its table's conj_prefix followed by
--- the conjunction), or nil when the row lacks one of its fields.
--- Escaped fields and tokens hold no '&' or '=', so "&f=" can only start field f.
local function conj_key_of(conj_prefix, fields, row)
  local parts = {}
  for _, field in ipairs(fields) do
    local _, at = string.find(row, field.needle, 1, true)
    if at == nil then
      return nil
    end
    local stop = string.find(row, '&', at + 1, true)
    parts[#parts + 1] = field.name .. '=' .. string.sub(row, at + 1, stop and stop - 1 or -1)
  end
  return conj_prefix .. table.concat(parts, '&')
end
