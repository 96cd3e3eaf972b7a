--[[
  Telling the writers of `writes: 'stream'` that their transactions were
  invalidated, shared by invalidate.lua, invalidate_insideout.lua and
  announce_done.lua.
]]

--- `writes: 'stream'`: the change stream's invalidation also tells the writers
--- waiting for its transactions (write/stream-wait.ts) in the same script, so no
--- writer hears of a transaction before its invalidation took effect. Optional:
--- KEYS[first_key..] the transactions' marks, ARGV[at] their time to live (ms),
--- ARGV[at + 1] the channel, ARGV[at + 2] the ids announced on it. pcall: a user
--- who may not publish there keeps a working invalidation (the writers wait out
--- their bound and invalidate their tables themselves).
local function announce_done(first_key, at)
  if ARGV[at] == nil then
    return
  end
  for k = first_key, #KEYS do
    redis.pcall('SET', KEYS[k], '1', 'PX', ARGV[at])
  end
  redis.pcall('PUBLISH', ARGV[at + 1], ARGV[at + 2])
end
