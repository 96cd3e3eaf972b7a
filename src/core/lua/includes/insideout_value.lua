--[[
  Insideout mode: a value is valid while the stamps of its invalidators, which
  it carries, are all still current (shared by fetch_insideout.lua and
  refresh_insideout.lua). The stamps field is a sequence of "<key>\n<stamp>\n"
  pairs.
]]

--- The encoded value at key when its stamps all match; else nil (an invalid value is deleted).
local function valid_insideout_value(key)
  local data = redis.call('HMGET', key, 'v', 's')
  if not data[1] then
    return nil
  end
  local keys, expected = {}, {}
  for stamp_key, stamp in string.gmatch(data[2] or '', '([^\n]+)\n([^\n]*)\n') do
    keys[#keys + 1] = stamp_key
    expected[#expected + 1] = stamp
  end
  if #keys > 0 then
    local current = redis.call('MGET', unpack(keys))
    for i = 1, #keys do
      if current[i] ~= expected[i] then
        redis.call('DEL', key)
        return nil
      end
    end
  end
  return data[1]
end
