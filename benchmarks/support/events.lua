-- wrk: POST /events, one view per request, of a client read from WRK_IDS and a product read from
-- WRK_PRODUCTS (one id per line), each event id new (the thread's number and a counter).
local ids, products = {}, {}
for line in io.lines(os.getenv("WRK_IDS")) do ids[#ids + 1] = line end
for line in io.lines(os.getenv("WRK_PRODUCTS")) do products[#products + 1] = line end
local threads, number, sent = 0, 0, 0
function setup(thread)
  threads = threads + 1
  thread:set("number", threads)
end
function init(args)
  math.randomseed(os.time() + number)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  sent = sent + 1
  local body = string.format('{"events":[{"event_id":"wrk-%d-%d-%d","client_id":"%s","product_id":"%s","event_type":"view","event_timestamp":"%s"}]}',
    os.time(), number, sent, ids[math.random(#ids)], products[math.random(#products)], os.date("!%Y-%m-%dT%H:%M:%SZ"))
  return wrk.format(nil, nil, nil, body)
end
