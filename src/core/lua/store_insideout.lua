--[[
  Insideout mode: stores a value together with the current stamps of its
  invalidators (one per conjunction, created when missing, and the
  generation of each table it depends on), unless an invalidation moved an
  epoch since the miss (see store.lua). Nothing points from invalidators to
  values, so Redis may evict anything with a TTL without making a value stale.
  Every key it touches is declared (built by cache-store.ts from keys.ts);
  T is the number of tables, C the number of conjunctions.

  KEYS[1]               value key (a hash: v = encoded value, s = stamps)   N q:<hash>
  KEYS[2]               epochs hash        N epochs
  KEYS[3]               lock key           N lock:<hash>
  KEYS[4..3+T]          generation of each table          N gen:<table>
  KEYS[4+T..3+T+C]      stamp of each conjunction         N conj:<table>:<conj>
  KEYS[4+T+C..3+T+2C]   its table's schemes set           N schemes:<table>
  ARGV[1]  the encoded value
  ARGV[2]  timeout in seconds
  ARGV[3]  lease token ("" when no lease was taken)
  ARGV[4]  a fresh random nonce (stamps of conjunctions created now)
  ARGV[5]  E, the number of epoch checks
  ARGV[6]  T
  ARGV[7..6+E]          the epoch fields ("*" and escaped table names)
  ARGV[7+E..6+2E]       the epoch each field had at the miss
  ARGV[7+2E..6+2E+C]    the scheme of each conjunction

  Returns 1 when stored, 0 when refused.
]]
--- @include "includes/lease"
--- @include "includes/epochs"

local timeout = tonumber(ARGV[2])
local nonce = ARGV[4]
local n_epochs = tonumber(ARGV[5])
local n_tables = tonumber(ARGV[6])
local n_conjs = (#KEYS - 3 - n_tables) / 2

release_lease(KEYS[3], ARGV[3])

if not epochs_unchanged(KEYS[2], 7, n_epochs) then
  return 0
end

local stamps = {}
for t = 1, n_tables do
  local gen_key = KEYS[3 + t]
  redis.call('SET', gen_key, '0', 'NX')
  stamps[#stamps + 1] = gen_key .. '\n' .. redis.call('GET', gen_key) .. '\n'
end

for c = 1, n_conjs do
  local conj_key = KEYS[3 + n_tables + c]
  redis.call('SADD', KEYS[3 + n_tables + n_conjs + c], ARGV[6 + 2 * n_epochs + c])
  local stamp = redis.call('GET', conj_key)
  if not stamp then
    stamp = nonce .. ':' .. c
    redis.call('SET', conj_key, stamp, 'EX', timeout)
  elseif redis.call('TTL', conj_key) < timeout then
    redis.call('EXPIRE', conj_key, timeout)
  end
  stamps[#stamps + 1] = conj_key .. '\n' .. stamp .. '\n'
end

redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 's', table.concat(stamps))
redis.call('EXPIRE', KEYS[1], timeout)
return 1
