--[[
  Insideout mode: refresh.lua for values that carry their invalidators'
  stamps. A value whose stamps no longer match was invalidated: it is gone
  (deleted here), never served stale.

  KEYS     as in refresh.lua (the value key is a hash: v = encoded value, s = stamps)
  ARGV     as in refresh.lua

  Returns as refresh.lua.
]]
--- @include "includes/miss_snapshot"
--- @include "includes/insideout_value"

local header = ARGV[3]
local value = valid_insideout_value(KEYS[1])
local state = 0
if value then
  if string.sub(value, 1, #header) ~= header then
    return value
  end
  state = 1
end
local result = miss_snapshot(KEYS[2], KEYS[3], tonumber(ARGV[1]), ARGV[2], argv_from(4))
table.insert(result, 1, state)
return result
