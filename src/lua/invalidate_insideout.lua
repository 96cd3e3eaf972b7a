--[[
  Insideout mode: invalidates by deleting the stamps of the conjunctions the
  rows match (values holding those stamps become misses when next read), or
  by moving a table's generation (whole table, or a row missing a field of
  a scheme). Bumps the epochs like invalidate.lua.

  KEYS[1]  epochs hash           N epochs
  ARGV     as in invalidate.lua

  Returns the number of stamps deleted plus generations moved.
]]
local ns = ARGV[1]
local changed = 0

local function split(text)
  local parts = {}
  for part in string.gmatch(text, '[^,]+') do
    parts[#parts + 1] = part
  end
  return parts
end

local i = 2
for _ = 1, tonumber(ARGV[i]) do
  local tbl = ARGV[i + 1]
  local n_rows = tonumber(ARGV[i + 2])
  i = i + 2
  redis.call('HINCRBY', KEYS[1], tbl, 1)
  local rows = {}
  for r = 1, math.max(n_rows, 0) do
    local n_fields = tonumber(ARGV[i + 1])
    local row = {}
    for f = 1, n_fields do
      row[ARGV[i + 2 * f]] = ARGV[i + 2 * f + 1]
    end
    rows[r] = row
    i = i + 1 + 2 * n_fields
  end

  local whole_table = n_rows < 0
  local conj_keys = {}
  if not whole_table then
    for _, scheme in ipairs(redis.call('SMEMBERS', ns .. 'schemes:' .. tbl)) do
      local fields = split(scheme)
      for _, row in ipairs(rows) do
        local parts = {}
        for _, field in ipairs(fields) do
          local token = row[field]
          if token == nil then
            whole_table = true
            break
          end
          parts[#parts + 1] = field .. '=' .. token
        end
        if whole_table then
          break
        end
        conj_keys[#conj_keys + 1] = ns .. 'conj:' .. tbl .. ':' .. table.concat(parts, '&')
      end
      if whole_table then
        break
      end
    end
  end
  if whole_table then
    redis.call('INCR', ns .. 'gen:' .. tbl)
    changed = changed + 1
  else
    for from = 1, #conj_keys, 500 do
      changed = changed + redis.call('DEL', unpack(conj_keys, from, math.min(from + 499, #conj_keys)))
    end
  end
end
return changed
