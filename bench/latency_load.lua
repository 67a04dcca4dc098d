-- wrk script for bench/latency_load.py: a sustained stream of profile updates at a steady rate.
-- Each thread owns a pool of LAT_POOL profiles, sent LAT_BATCH at a time; the first pass creates them in the
-- "Premium or Trial" audience, every later pass moves the same profiles out (Free) or back in (Premium), so
-- every profile written is a membership change that goes to the partner. Paced per thread to LAT_RATE / threads
-- profiles per second over the run (wrk's clock is whole seconds: the pace holds on average, not per request).
local per_request = tonumber(os.getenv("LAT_BATCH") or "50")
local rate = tonumber(os.getenv("LAT_RATE") or "500")
local pool = tonumber(os.getenv("LAT_POOL") or "2000")
local auth = os.getenv("LAT_AUTH")
local run = os.getenv("LAT_RUN") or "0"
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  sent = 0
  started = os.time()
  blocks = math.max(1, math.floor(pool / per_request))
  share = rate / tonumber(os.getenv("LAT_THREADS") or "2")
end

local RECORD = '{"external_id":"%s","attributes":{"status":"%s","plan":"latency"},' ..
  '"identities":[{"type":"email","value":"%s@latency.example.com"}]}'

function request()
  local block = sent % blocks
  local status = (math.floor(sent / blocks) % 2 == 0) and "Premium" or "Free"
  local items = {}
  for n = 1, per_request do
    local ext = string.format("lat-%s-%s-%d", run, id, block * per_request + n)
    items[n] = string.format(RECORD, ext, status, ext)
  end
  sent = sent + 1
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = auth}
  return wrk.format("POST", "/api/v1/profiles/bulk/", headers, '{"profiles":[' .. table.concat(items, ",") .. ']}')
end

function delay()
  -- When the next request is due at this thread's pace, in milliseconds from now (never negative).
  local due = sent * per_request / share
  local ahead = due - (os.time() - started)
  if ahead <= 0 then
    return 0
  end
  return math.floor(ahead * 1000)
end

function done(summary, latency, requests)
  local sent_total = 0
  for _, thread in ipairs(threads) do
    sent_total = sent_total + thread:get("sent")
  end
  local e = summary.errors
  io.write(string.format(
    'LATENCY-LOAD {"requests":%d,"seconds":%.3f,"sent":%d,"per_request":%d,' ..
    '"p50_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f,"non_2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\n',
    summary.requests, summary.duration / 1e6, sent_total, per_request,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    e.status, e.connect, e.read, e.write, e.timeout))
end
