--[[
  Reaps dead entries of the invalidation structures (`cacheops reap-conjs`).
  A conj set keeps the names of values that were since deleted (by another
  conjunction's invalidation, a function cache's delete) or expired while the
  set lived on; an index set keeps the names of conj sets that were emptied or
  expired. Neither makes a read stale, both waste memory and invalidation time.

  Every key given shares one namespace hash tag (one slot on a cluster). A key
  that is not a set (insideout mode keeps stamps under conj:) is left alone.

  ARGV[1] = "conj":
    KEYS[1]  a conj set            N conj:<table>:<conj>
    KEYS[2]  its index set         N idx:<table>:<scheme>
    KEYS[3..] members of KEYS[1] to check (value keys N q:<hash>)
    Removes the members whose value no longer exists. When the conj set is
    then gone (Redis deletes an empty set), removes it from its index set.

  ARGV[1] = "idx":
    KEYS[1]  an index set          N idx:<table>:<scheme>
    KEYS[2..] members of KEYS[1] to check (conj keys)
    Removes the members naming a conj set that no longer exists.

  Both checks and removals happen in this one script, so a store running
  between them (store.lua adds a value and its conj entries atomically) can
  never lose an entry it needs.

  Returns {members removed, 1 when the conj set is gone else 0}.
]]
local function is_set(key)
  return redis.call('TYPE', key).ok == 'set'
end

local mode = ARGV[1]
local removed = 0

if mode == 'conj' then
  if redis.call('EXISTS', KEYS[1]) == 1 and not is_set(KEYS[1]) then
    return {0, 0}
  end
  for i = 3, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 0 then
      removed = removed + redis.call('SREM', KEYS[1], KEYS[i])
    end
  end
  if redis.call('EXISTS', KEYS[1]) == 0 then
    if is_set(KEYS[2]) then
      redis.call('SREM', KEYS[2], KEYS[1])
    end
    return {removed, 1}
  end
  return {removed, 0}
end

if mode == 'idx' then
  if not is_set(KEYS[1]) then
    return {0, 0}
  end
  for i = 2, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 0 then
      removed = removed + redis.call('SREM', KEYS[1], KEYS[i])
    end
  end
  return {removed, 0}
end

return redis.error_reply('reap_conjs.lua: unknown mode ' .. tostring(mode))
