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

  The stamps field is a sequence of "<key>\n<stamp>\n" pairs.
  Returns the value on a hit, else the array described in fetch.lua.
]]
--- @include "includes/miss_snapshot"

local data = redis.call('HMGET', KEYS[1], 'v', 's')
if data[1] then
  local keys, expected = {}, {}
  for key, stamp in string.gmatch(data[2] or '', '([^\n]+)\n([^\n]*)\n') do
    keys[#keys + 1] = key
    expected[#expected + 1] = stamp
  end
  local valid = true
  if #keys > 0 then
    local current = redis.call('MGET', unpack(keys))
    for i = 1, #keys do
      if current[i] ~= expected[i] then
        valid = false
        break
      end
    end
  end
  if valid then
    return data[1]
  end
  redis.call('DEL', KEYS[1])
end

return miss_snapshot(KEYS[2], KEYS[3])
