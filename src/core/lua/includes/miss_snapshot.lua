--[[
  The miss branch shared by fetch.lua, fetch_insideout.lua and the refresh
  scripts: snapshots the epochs of "*" and of the given tables, and takes the
  dog-pile lease when asked (lock_ms > 0).

  A lease is "<token>@<epochs>": the epochs it was taken under. An
  invalidation of one of its tables moves an epoch, which voids the lease:
  the holder's fill will be refused by store.lua anyway, so the next miss
  takes the lease over instead of waiting for a value that cannot come. A
  holder that died releases by expiry (lock_ms).

  Returns {lock state, epoch of "*", epoch of each table ("0" when never bumped)};
  lock state 1 = the caller may compute (lease taken, or none asked), 0 = a valid lease is held.
]]
local function miss_snapshot(epochs_key, lock_key, lock_ms, token, tables)
  local fields = {'*'}
  for i = 1, #tables do
    fields[#fields + 1] = tables[i]
  end
  local epochs = redis.call('HMGET', epochs_key, unpack(fields))
  local result = {1}
  for i = 1, #epochs do
    result[#result + 1] = epochs[i] or '0'
  end
  if lock_ms > 0 then
    local stamp = table.concat(result, ',', 2)
    local lease = token .. '@' .. stamp
    if not redis.call('SET', lock_key, lease, 'NX', 'PX', lock_ms) then
      local held = redis.call('GET', lock_key)
      if held and string.match(held, '@(.*)$') == stamp then
        result[1] = 0
      else
        redis.call('SET', lock_key, lease, 'PX', lock_ms)
      end
    end
  end
  return result
end

--- ARGV[first..] as a list (the table names a script was given).
local function argv_from(first)
  local list = {}
  for i = first, #ARGV do
    list[#list + 1] = ARGV[i]
  end
  return list
end
