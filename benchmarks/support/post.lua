-- wrk: POST /recommend for clients read from ids.txt (one id per line), in random order.
local ids = {}
for line in io.lines(os.getenv("WRK_IDS")) do ids[#ids + 1] = line end
local k = os.getenv("WRK_K") or "10"
math.randomseed(os.time())
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local id = ids[math.random(#ids)]
  return wrk.format(nil, nil, nil, '{"client_id":"' .. id .. '","k":' .. k .. '}')
end
