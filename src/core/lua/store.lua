--[[
  Stores a value and registers it under every conjunction it depends on,
  unless an invalidation of one of its tables happened since the miss
  snapshotted the epochs (then the value may already be stale: refused).

  KEYS[1]  value key             N q:<hash>
  KEYS[2]  epochs hash           N epochs
  KEYS[3]  lock key              N lock:<hash>
  KEYS[4]  fence key             N fence (never exists; see fenceKey in keys.ts)
  ARGV[1]  namespace N (the conj/scheme/index keys are built from it; they share its hash tag)
  ARGV[2]  the encoded value
  ARGV[3]  timeout in seconds
  ARGV[4]  lease token ("" when no lease was taken)
  ARGV[5]  E, the number of epoch checks, followed by E pairs (field, expected epoch)
  then     C, the number of conjunctions, followed by C triples (table, scheme, conj)
           table/scheme/conj are escaped; conj is "f=v&g=w" in scheme order, "" for "every row"

  Returns 1 when stored, 0 when refused.
]]
local ns = ARGV[1]
local value_key = KEYS[1]
local timeout = tonumber(ARGV[3])

-- Release our lease ("<token>@<epochs>", see includes/miss_snapshot), not one that took it over.
if ARGV[4] ~= '' then
  local held = redis.call('GET', KEYS[3])
  if held and string.sub(held, 1, #ARGV[4] + 1) == ARGV[4] .. '@' then
    redis.call('DEL', KEYS[3])
  end
end

local i = 5
local n_epochs = tonumber(ARGV[i])
for _ = 1, n_epochs do
  local current = redis.call('HGET', KEYS[2], ARGV[i + 1]) or '0'
  if current ~= ARGV[i + 2] then
    return 0
  end
  i = i + 2
end
i = i + 1

-- An invalidator must outlive every value it guards: only ever extend its TTL.
-- In milliseconds: TTL rounds to the nearest second, so a set with 9.6 s left
-- reads as 10 and would not be extended for a 10 s value it must outlive.
local timeout_ms = timeout * 1000
local function extend(key)
  if redis.call('PTTL', key) < timeout_ms then
    redis.call('PEXPIRE', key, timeout_ms)
  end
end

local n_conjs = tonumber(ARGV[i])
for _ = 1, n_conjs do
  local tbl, scheme, conj = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local conj_key = ns .. 'conj:' .. tbl .. ':' .. conj
  local index_key = ns .. 'idx:' .. tbl .. ':' .. scheme
  redis.call('SADD', ns .. 'schemes:' .. tbl, scheme)
  redis.call('SADD', conj_key, value_key)
  extend(conj_key)
  redis.call('SADD', index_key, conj_key)
  extend(index_key)
  i = i + 3
end

redis.call('SET', value_key, ARGV[2], 'EX', timeout)
return 1
