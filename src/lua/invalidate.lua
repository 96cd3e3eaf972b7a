--[[
  Invalidates every cached value whose conjunctions match the given rows, or
  every value of a table, and bumps the tables' epochs so that a value read
  from the database before this call can no longer be stored (see store.lua).

  KEYS[1]  epochs hash           N epochs
  ARGV[1]  namespace N
  ARGV[2]  T, the number of tables, then for each table:
             table name (escaped)
             R, the number of rows; -1 means "the whole table"
             for each row: F, the number of fields, then F pairs (field, token), escaped

  A row missing a field of a scheme cannot be placed in it, so every
  conjunction of that scheme is dropped (through the scheme's index).

  Returns the number of cached values deleted.
]]
local ns = ARGV[1]
local deleted = 0

local function split(text)
  local parts = {}
  if text == '' then
    return parts
  end
  for part in string.gmatch(text, '[^,]+') do
    parts[#parts + 1] = part
  end
  return parts
end

local function drop(conj_keys)
  local batch = 500
  for from = 1, #conj_keys, batch do
    local to = math.min(from + batch - 1, #conj_keys)
    local chunk = {unpack(conj_keys, from, to)}
    local values = redis.call('SUNION', unpack(chunk))
    for v = 1, #values, batch do
      deleted = deleted + redis.call('DEL', unpack(values, v, math.min(v + batch - 1, #values)))
    end
    redis.call('DEL', unpack(chunk))
  end
end

local i = 2
local n_tables = tonumber(ARGV[i])
for _ = 1, n_tables do
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

  local schemes = redis.call('SMEMBERS', ns .. 'schemes:' .. tbl)
  local conj_keys = {}
  local seen = {}
  for _, scheme in ipairs(schemes) do
    local index_key = ns .. 'idx:' .. tbl .. ':' .. scheme
    local fields = split(scheme)
    local whole_scheme = n_rows < 0
    local keys_of_scheme = {}
    if not whole_scheme then
      for _, row in ipairs(rows) do
        local parts = {}
        for _, field in ipairs(fields) do
          local token = row[field]
          if token == nil then
            whole_scheme = true
            break
          end
          parts[#parts + 1] = field .. '=' .. token
        end
        if whole_scheme then
          break
        end
        keys_of_scheme[#keys_of_scheme + 1] = ns .. 'conj:' .. tbl .. ':' .. table.concat(parts, '&')
      end
    end
    if whole_scheme then
      keys_of_scheme = redis.call('SMEMBERS', index_key)
      redis.call('DEL', index_key)
    elseif #keys_of_scheme > 0 then
      redis.call('SREM', index_key, unpack(keys_of_scheme))
    end
    for _, key in ipairs(keys_of_scheme) do
      if not seen[key] then
        seen[key] = true
        conj_keys[#conj_keys + 1] = key
      end
    end
  end
  drop(conj_keys)
end
return deleted
