#!lua flags=allow-oom
--[[
  Insideout mode: invalidates by deleting the stamps of the conjunctions the
  rows match (values holding those stamps become misses when next read), or
  by moving a table's generation (whole table, or a row missing a field of
  a scheme). Bumps the epochs like invalidate.lua.

  KEYS[1]  epochs hash           N epochs
  KEYS[2]  fence key             N fence (never exists; see fenceKey in keys.ts)
  ARGV     as in invalidate.lua

  Returns the number of stamps deleted plus generations moved.
]]
--- @include "includes/invalidation_rows"

local ns = ARGV[1]
local changed = 0

for _, t in ipairs(invalidated_tables()) do
  local tbl = t.name
  redis.call('HINCRBY', KEYS[1], tbl, 1)
  local whole_table = t.whole
  local conj_keys = {}
  if not whole_table then
    for _, scheme in ipairs(redis.call('SMEMBERS', ns .. 'schemes:' .. tbl)) do
      local fields = scheme_fields(scheme)
      for _, row in ipairs(t.rows) do
        local key = conj_key_of(ns, tbl, fields, row)
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
    redis.call('INCR', ns .. 'gen:' .. tbl)
    changed = changed + 1
  else
    for from = 1, #conj_keys, 500 do
      changed = changed + redis.call('DEL', unpack(conj_keys, from, math.min(from + 499, #conj_keys)))
    end
  end
end
return changed
