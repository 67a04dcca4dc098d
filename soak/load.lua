-- wrk script for soak/load.py: alternately POST a batch of new profiles (with an email, in the "Premium"
-- audience that forwards to Mailchimp) and a batch of events for profiles sent before. Every profile
-- request's external ids are new (thread number + request counter). Prints one line of JSON for load.py at the end.
local per_request = tonumber(os.getenv("SOAK_BATCH") or "100")
local auth = os.getenv("SOAK_AUTH")
local run = os.getenv("SOAK_RUN") or "0"  -- new ids every run: the soak database keeps its profiles
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  tags = {}
  profiles_sent = 0
  events_sent = 0
end

-- One record of each kind; the external id fills both %s.
local RECORDS = {
  profiles = '{"external_id":"%s","attributes":{"status":"Premium","plan":"soak"},' ..
    '"identities":[{"type":"email","value":"%s@load.example.com"}]}',
  events = '{"external_id":"%s","name":"Play Video","attributes":{"category":"soak"},' ..
    '"occurred_at":"2026-01-01T00:00:00Z","source_id":"%s-e"}',
}

local function body(kind, tag)
  local items = {}
  for n = 1, per_request do
    local ext = string.format("load-%s-%s-%d", run, tag, n)
    items[n] = string.format(RECORDS[kind], ext, ext)
  end
  return '{"' .. kind .. '":[' .. table.concat(items, ",") .. ']}'
end

function request()
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = auth}
  if counter % 2 == 1 then
    local tag = id .. "-" .. counter
    table.insert(tags, tag)
    profiles_sent = profiles_sent + 1
    return wrk.format("POST", "/api/v1/profiles/bulk/", headers, body("profiles", tag))
  end
  -- Events for the profiles of this thread's profile request before the last one, which has been answered
  -- (each connection waits for its answer, and a thread has two); the first events have profiles of their own.
  events_sent = events_sent + 1
  local tag = tags[#tags - 1] or (id .. "-first")
  return wrk.format("POST", "/api/v1/events/bulk/", headers, body("events", tag))
end

function done(summary, latency, requests)
  local profiles, events = 0, 0
  for _, thread in ipairs(threads) do
    profiles = profiles + thread:get("profiles_sent")
    events = events + thread:get("events_sent")
  end
  local e = summary.errors
  io.write(string.format(
    'SOAK-LOAD {"requests":%d,"seconds":%.3f,"profile_requests":%d,"event_requests":%d,"per_request":%d,' ..
    '"p50_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f,"non_2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\n',
    summary.requests, summary.duration / 1e6, profiles, events, per_request,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    e.status, e.connect, e.read, e.write, e.timeout))
end
