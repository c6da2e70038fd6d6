-- wrk script for BENCHMARKS.md: single-notification POST /v1/notifications,
-- each request with an id of its own. A notification due tomorrow, so the
-- daemon's intake stores it with a timer and no provider is involved.
--   CASCADE_TOKEN=... wrk -t2 -c32 -d30s --latency -s scripts/http-intake-bench.lua http://127.0.0.1:8080
local counter = 0
thread_id = 0
local threads = {}
local send_at = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() + 86400)
local token = os.getenv("CASCADE_TOKEN") or ""

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local id = string.format("bench-%d-%d-%d:delayed", os.time(), thread_id, counter)
  local body = string.format(
    '{"id":"%s","policy":"bench","customer":{"id":"c-%d","contacts":{"vk":"%d","sms":"+7916%07d"}},'
      .. '"content":{"text":"Заказ задерживается"},"send_at":"%s"}',
    id, counter, 100000 + counter, counter % 10000000, send_at)
  return wrk.format("POST", "/v1/notifications", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end

function done(summary, latency, requests)
  io.write(string.format("p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
