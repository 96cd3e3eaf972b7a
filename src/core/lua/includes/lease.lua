--[[
  Giving a dog-pile lease back, shared by release_lease.lua, store.lua and
  store_insideout.lua. A lease is "<token>@<epochs>" (includes/miss_snapshot):
  only its holder's token releases it, never a lease another caller took over.
]]

--- Deletes the lease at lock_key when it is token's; 1 when released, else 0.
local function release_lease(lock_key, token)
  if token == '' then
    return 0
  end
  local held = redis.call('GET', lock_key)
  if held and string.sub(held, 1, #token + 1) == token .. '@' then
    return redis.call('DEL', lock_key)
  end
  return 0
end
