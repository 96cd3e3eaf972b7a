--[[
  Insideout mode (memory-limit mode): reads a cached value and checks the
  stamps of its invalidators, which the value carries. A value whose stamps
  no longer match (its conjunction was invalidated, expired or evicted, or its
  table generation moved) is a miss. On a miss it behaves like fetch.lua.

  KEYS[1]  value key (a hash: v = encoded value, s = stamps)   N q:<hash>
  KEYS[2]  epochs hash                                          N epochs
  KEYS[3]  lock key                                             N lock:<hash>
  ARGV[1]  lock time-to-live in ms, "0" for no lock
  ARGV[2]  lock token
  ARGV[3..] table names (escaped)

  The stamps are checked by includes/insideout_value.lua.
  Returns the value on a hit, else the array described in fetch.lua.
]]
--- @include "includes/miss_snapshot"
--- @include "includes/insideout_value"

local value = valid_insideout_value(KEYS[1])
if value then
  return value
end
return miss_snapshot(KEYS[2], KEYS[3], tonumber(ARGV[1]), ARGV[2], argv_from(3))
