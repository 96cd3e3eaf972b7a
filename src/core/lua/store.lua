--[[
  Stores a value and registers it under every conjunction it depends on,
  unless an invalidation of one of its tables happened since the miss
  snapshotted the epochs (then the value may already be stale: refused).
  Every key it touches is declared (built by cache-store.ts from keys.ts) and
  shares the value's hash tag; C is the number of conjunctions.

  KEYS[1]           value key          N q:<hash>
  KEYS[2]           epochs hash        N epochs
  KEYS[3]           lock key           N lock:<hash>
  KEYS[4..3+C]      conj set of each conjunction      N conj:<table>:<conj>
  KEYS[4+C..3+2C]   its index set                     N idx:<table>:<scheme>
  KEYS[4+2C..3+3C]  its table's schemes set           N schemes:<table>
  ARGV[1]  the encoded value
  ARGV[2]  timeout in seconds
  ARGV[3]  lease token ("" when no lease was taken)
  ARGV[4]  E, the number of epoch checks
  ARGV[5..4+E]      the epoch fields ("*" and escaped table names)
  ARGV[5+E..4+2E]   the epoch each field had at the miss
  ARGV[5+2E..4+2E+C] the scheme of each conjunction (escaped field names, comma-joined)

  Returns 1 when stored, 0 when refused.
]]
--- @include "includes/lease"
--- @include "includes/epochs"

local value_key = KEYS[1]
local timeout = tonumber(ARGV[2])
local n_epochs = tonumber(ARGV[4])
local n_conjs = (#KEYS - 3) / 3

release_lease(KEYS[3], ARGV[3])

if not epochs_unchanged(KEYS[2], 5, n_epochs) then
  return 0
end

-- An invalidator must outlive every value it guards: only ever extend its TTL.
-- In milliseconds: TTL rounds to the nearest second, so a set with 9.6 s left
-- reads as 10 and would not be extended for a 10 s value it must outlive.
local timeout_ms = timeout * 1000
local function extend(key)
  if redis.call('PTTL', key) < timeout_ms then
    redis.call('PEXPIRE', key, timeout_ms)
  end
end

for c = 1, n_conjs do
  local conj_key, index_key = KEYS[3 + c], KEYS[3 + n_conjs + c]
  redis.call('SADD', KEYS[3 + 2 * n_conjs + c], ARGV[4 + 2 * n_epochs + c])
  redis.call('SADD', conj_key, value_key)
  extend(conj_key)
  redis.call('SADD', index_key, conj_key)
  extend(index_key)
end

redis.call('SET', value_key, ARGV[1], 'EX', timeout)
return 1
