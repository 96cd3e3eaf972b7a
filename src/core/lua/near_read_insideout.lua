--[[
  Insideout mode: the first half of the near cache's read of a value, on the
  connection with client tracking on. Redis tracks the keys a script declares
  (not the ones it reaches otherwise), so this script only reads the value
  hash; the caller then reads the stamp keys it names with a plain MGET on the
  same connection, which makes Redis track them too, and compares them.
  A stamp can only change to a value it never had before (fresh nonces,
  increasing generations), so equal stamps mean the value was still valid when
  the MGET ran; any change after that is reported.

  KEYS[1]  value key (a hash: v = encoded value, s = stamps)   N q:<hash>

  Returns {value, stamps, PTTL in ms}, or false when there is no value.
]]
local data = redis.call('HMGET', KEYS[1], 'v', 's')
if not data[1] then
  return false
end
return {data[1], data[2] or '', redis.call('PTTL', KEYS[1])}
