#!lua flags=allow-oom
--[[
  Invalidates every cached value whose conjunctions match the given rows, or
  every value of a table, and bumps the tables' epochs so that a value read
  from the database before this call can no longer be stored (see store.lua).

  The conj and index keys it deletes are derived from the schemes it finds,
  by appending to the prefixes it is given (keys.ts: conjPrefix, indexPrefix);
  they share the hash tag of the declared keys. T is the number of tables.

  KEYS[1]         epochs hash        N epochs
  KEYS[2]         fence key          N fence (never exists; see fenceKey in keys.ts)
  KEYS[3..2+T]    schemes set of each table      N schemes:<table>
  ARGV[1]         T
  ARGV[2..1+T]    table names (escaped; the epoch fields)
  ARGV[2+T..1+2T] R, the number of rows of each table; -1 means "the whole table"
  ARGV[2+2T..1+3T] conj key prefix of each table  N conj:<table>:
  ARGV[2+3T..1+4T] index key prefix of each table N idx:<table>:
  ARGV[2+4T..]    the rows, table after table: fields and tokens, escaped, as `f=t&g=u`
  KEYS[3+T..]     (optional) marks of the transactions this invalidation covers  N stream:done:<db>:<id>
  ARGV after the rows (with the marks): their time to live in ms, the channel   N stream:done:<db>,
                  the ids (comma-separated): see announce_done

  A row missing a field of a scheme cannot be placed in it, so every
  conjunction of that scheme is dropped (through the scheme's index).

  Returns the number of cached values deleted.
]]
--- @include "includes/invalidation_rows"
--- @include "includes/announce"

local deleted = 0

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

local tables, after_rows = invalidated_tables(4)
for _, t in ipairs(tables) do
  redis.call('HINCRBY', KEYS[1], t.name, 1)
  local conj_keys = {}
  local seen = {}
  for _, scheme in ipairs(redis.call('SMEMBERS', t.schemes_key)) do
    local index_key = t.index_prefix .. scheme
    local fields = scheme_fields(scheme)
    local whole_scheme = t.whole
    local keys_of_scheme = {}
    if not whole_scheme then
      for _, row in ipairs(t.rows) do
        local key = conj_key_of(t.conj_prefix, fields, row)
        if key == nil then
          whole_scheme = true
          break
        end
        keys_of_scheme[#keys_of_scheme + 1] = key
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
announce_done(3 + #tables, after_rows)
return deleted
