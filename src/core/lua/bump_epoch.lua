#!lua flags=allow-oom
--[[
  Bumps the "*" epoch of a namespace (invalidateAll): a value read from the
  database before it can no longer be stored (see store.lua). Only bumps a
  counter, so it may run on a full Redis (allow-oom).

  KEYS[1]  epochs hash           N epochs

  Returns the new epoch.
]]
return redis.call('HINCRBY', KEYS[1], '*', 1)
