-- wrk script: POST bodies from a pool file (one per line) with unique messageIds.
-- Arguments (after `--`): <pool file> <path> <Authorization header> <4-char run tag>.
-- Each body's messageIds end in a 14-char placeholder; every request replaces it with
-- <run tag><thread id as 2 hex><request counter as 8 hex>, so no two requests share an id.
-- Requests are pre-formatted in init() and split at the placeholder: a request costs one concat.
-- done() prints one `WRKJSON {...}` line; the driver refuses a run without it.

local placeholder = "~~~~~~~~~~~~~~"
local pool, size, index, counter = {}, 0, 0, 0
local prefix = ""
local next_thread = 0

function setup(thread)
   thread:set("thread_id", next_thread)
   next_thread = next_thread + 1
end

local function split(text)
   local parts, start = {}, 1
   while true do
      local first, last = string.find(text, placeholder, start, true)
      if not first then
         parts[#parts + 1] = string.sub(text, start)
         return parts
      end
      parts[#parts + 1] = string.sub(text, start, first - 1)
      start = last + 1
   end
end

function init(args)
   local file, path, auth, tag = args[1], args[2], args[3], args[4]
   assert(file and path and auth and tag and #tag == 4, "usage: -- <pool file> <path> <auth> <4-char tag>")
   prefix = tag .. string.format("%02x", thread_id or 0)
   local headers = { ["Content-Type"] = "application/json", ["Authorization"] = auth }
   for line in io.lines(file) do
      if #line > 0 then
         size = size + 1
         pool[size] = split(wrk.format("POST", path, headers, line))
      end
   end
   assert(size > 0, "empty pool file " .. file)
end

function request()
   index = index % size + 1
   counter = counter + 1
   return table.concat(pool[index], prefix .. string.format("%08x", counter))
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
      '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%.0f,"p90_us":%.0f,' ..
      '"p99_us":%.0f,"p999_us":%.0f,"mean_us":%.1f,"max_us":%.0f}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
      e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.mean, latency.max))
end
