#!lua flags=allow-oom
--[[
  Insideout mode: invalidates by deleting the stamps of the conjunctions the
  rows match (values holding those stamps become misses when next read), or
  by moving a table's generation (whole table, or a row missing a field of
  a scheme). Bumps the epochs like invalidate.lua.

  KEYS[1]           epochs hash        N epochs
  KEYS[2]           fence key          N fence (never exists; see fenceKey in keys.ts)
  KEYS[3..2+T]      schemes set of each table       N schemes:<table>
  KEYS[3+T..2+2T]   generation of each table        N gen:<table>
  KEYS[3+2T..]      (optional) marks of the transactions covered, as in invalidate.lua
  ARGV              as in invalidate.lua without the index key prefixes:
                    T, table names, row counts, conj key prefixes, rows
                    (then, with the marks, their time to live, the channel, the ids)

  Returns the number of stamps deleted plus generations moved.
]]
--- @include "includes/invalidation_rows"
--- @include "includes/announce"

local changed = 0

local tables, after_rows = invalidated_tables(3)
for _, t in ipairs(tables) do
  redis.call('HINCRBY', KEYS[1], t.name, 1)
  local whole_table = t.whole
  local conj_keys = {}
  if not whole_table then
    for _, scheme in ipairs(redis.call('SMEMBERS', t.schemes_key)) do
      local fields = scheme_fields(scheme)
      for _, row in ipairs(t.rows) do
        local key = conj_key_of(t.conj_prefix, fields, row)
        if key == nil then
          whole_table = true
          break
        end
        conj_keys[#conj_keys + 1] = key
      end
      if whole_table then
        break
      end
    end
  end
  if whole_table then
    redis.call('INCR', t.gen_key)
    changed = changed + 1
  else
    for from = 1, #conj_keys, 500 do
      changed = changed + redis.call('DEL', unpack(conj_keys, from, math.min(from + 499, #conj_keys)))
    end
  end
end
announce_done(3 + 2 * #tables, after_rows)
return changed
