--[[
  Reads a cached value; on a miss, snapshots the invalidation epochs of the
  tables the value depends on (and takes the dog-pile lock when asked), all in
  the one round trip the hit path pays anyway.

  KEYS[1]  value key             N q:<hash>
  KEYS[2]  epochs hash           N epochs
  KEYS[3]  lock key              N lock:<hash>
  ARGV[1]  lock time-to-live in ms, "0" for no lock
  ARGV[2]  lock token (unique per attempt)
  ARGV[3..] table names (escaped) the value depends on

  Returns the value (bulk string) on a hit. On a miss, an array:
    [1] lock state: 1 = caller may compute (lock taken or not asked), 0 = another holds it
    [2] epoch of "*" (bumped by invalidateAll)
    [3..] epoch of each table, in ARGV order ("0" when never bumped)
]]
--- @include "includes/miss_snapshot"

local value = redis.call('GET', KEYS[1])
if value then
  return value
end
return miss_snapshot(KEYS[2], KEYS[3], tonumber(ARGV[1]), ARGV[2], argv_from(3))
