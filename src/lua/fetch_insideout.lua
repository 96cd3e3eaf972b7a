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

local lock_state = 1
if tonumber(ARGV[1]) > 0 then
  if not redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', tonumber(ARGV[1])) then
    lock_state = 0
  end
end
local fields = {'*'}
for i = 3, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local epochs = redis.call('HMGET', KEYS[2], unpack(fields))
local result = {lock_state}
for i = 1, #epochs do
  result[#result + 1] = epochs[i] or '0'
end
return result
