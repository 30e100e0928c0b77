-- wrk: a mix of POST /recommend (known clients, k=10) and POST /similar (known products, k=10),
-- with the service's bearer token. WRK_IDS and WRK_PRODUCTS: one id per line; WRK_SIMILAR: the
-- share of /similar (default 0.2); WRK_TOKEN: the token.
local ids, products = {}, {}
for line in io.lines(os.getenv("WRK_IDS")) do ids[#ids + 1] = line end
for line in io.lines(os.getenv("WRK_PRODUCTS")) do products[#products + 1] = line end
local share = tonumber(os.getenv("WRK_SIMILAR") or "0.2")
local token = os.getenv("WRK_TOKEN")
math.randomseed(os.time())
request = function()
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
  if math.random() < share then
    local p = products[math.random(#products)]
    return wrk.format("POST", "/similar", headers, '{"product_id":"' .. p .. '","k":10}')
  end
  local id = ids[math.random(#ids)]
  return wrk.format("POST", "/recommend", headers, '{"client_id":"' .. id .. '","k":10}')
end
