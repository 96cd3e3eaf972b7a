--[[
  The miss branch shared by fetch.lua and fetch_insideout.lua: takes the
  dog-pile lock when asked, and snapshots the epochs of "*" and of the
  tables named from ARGV[3] on.

  Returns {lock state, epoch of "*", epoch of each table ("0" when never bumped)}.
]]
local function miss_snapshot(epochs_key, lock_key)
  local lock_state = 1
  local lock_ms = tonumber(ARGV[1])
  if lock_ms > 0 then
    if not redis.call('SET', lock_key, ARGV[2], 'NX', 'PX', lock_ms) then
      lock_state = 0
    end
  end
  local fields = {'*'}
  for i = 3, #ARGV do
    fields[#fields + 1] = ARGV[i]
  end
  local epochs = redis.call('HMGET', epochs_key, unpack(fields))
  local result = {lock_state}
  for i = 1, #epochs do
    result[#result + 1] = epochs[i] or '0'
  end
  return result
end
