--[[
  Releases a dog-pile lease its holder gives up (a refresh whose query
  failed, a value that is not to be stored), so that readers stop serving the
  stale value at once and the next one refreshes; a lease another caller took
  over is left alone.

  KEYS[1]  lock key              N lock:<hash>
  ARGV[1]  the holder's lease token

  Returns 1 when released, 0 when the lease was not (or no longer) the holder's.
]]
--- @include "includes/lease"

return release_lease(KEYS[1], ARGV[1])
