#!lua flags=allow-oom
--[[
  `writes: 'stream'`: tells the writers waiting for transactions that the change
  stream invalidated them, when there was nothing to invalidate in Redis (a
  batch of no cached table); otherwise the invalidation script does it.

  KEYS[1..]  the transactions' marks   N stream:done:<db>:<id>
  ARGV[1]    the marks' time to live, ms
  ARGV[2]    the channel               N stream:done:<db>
  ARGV[3]    the ids, comma-separated

  Returns the number of marks set.
]]
--- @include "includes/announce"

announce_done(1, 1)
return #KEYS
