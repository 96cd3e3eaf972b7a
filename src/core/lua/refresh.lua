--[[
  Stale-while-revalidate: a reader found a value past its fresh time (but
  within its profile's staleWhileRevalidate window) and asks who refreshes it.
  The refresh lease is the dog-pile lease (includes/miss_snapshot): the first
  reader takes it and recomputes, the others serve the stale value meanwhile.
  The epochs are snapshotted as on a miss, so a refresh that races an
  invalidation is refused by store.lua.

  KEYS[1]  value key             N q:<hash>
  KEYS[2]  epochs hash           N epochs
  KEYS[3]  lock key              N lock:<hash>
  ARGV[1]  lease time-to-live in ms
  ARGV[2]  lease token (unique per attempt)
  ARGV[3]  the freshness header of the value the reader found (see src/core/freshness.ts)
  ARGV[4..] table names (escaped) the value depends on

  Returns the current value (bulk string) when it is no longer the one the
  reader found (a refresh stored it meanwhile). Otherwise an array:
    [1] 1 = the stale value is still there, 0 = it is gone (an invalidation
        deleted it, or it expired): the reader has a plain miss
    [2..] as fetch.lua's miss: lock state (1 = the caller holds the lease), epochs
]]
--- @include "includes/miss_snapshot"

local header = ARGV[3]
local current = redis.call('GETRANGE', KEYS[1], 0, #header - 1)
local state = 0
if current == header then
  state = 1
elseif current ~= '' then
  return redis.call('GET', KEYS[1])
end
local result = miss_snapshot(KEYS[2], KEYS[3], tonumber(ARGV[1]), ARGV[2], argv_from(4))
table.insert(result, 1, state)
return result
