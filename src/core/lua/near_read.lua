--[[
  The near cache's read of a value, on the connection with client tracking on:
  the key is declared to the script, so Redis tracks it for this connection
  (it tracks a script's declared keys, not others the script reaches) and sends
  an invalidation message when it is deleted, overwritten, expired or evicted. The remaining time to live bounds how long process memory keeps it.

  KEYS[1]  value key             N q:<hash>

  Returns {value, PTTL in ms} or false when there is no value.
]]
local value = redis.call('GET', KEYS[1])
if not value then
  return false
end
return {value, redis.call('PTTL', KEYS[1])}
