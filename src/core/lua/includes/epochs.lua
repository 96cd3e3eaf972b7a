--[[
  The store scripts' race check (store.lua, store_insideout.lua): a value may
  be stored only if no invalidation of its tables moved an epoch since the
  miss snapshotted them (includes/miss_snapshot).
]]

--- Whether the n epoch fields at ARGV[first..first+n-1] still hold the values
--- at ARGV[first+n..first+2n-1] ("0" for a field never bumped).
local function epochs_unchanged(epochs_key, first, n)
  for e = 0, n - 1 do
    if (redis.call('HGET', epochs_key, ARGV[first + e]) or '0') ~= ARGV[first + n + e] then
      return false
    end
  end
  return true
end
