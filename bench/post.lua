-- wrk: POST the JSON in a file to the URL, again and again.
-- Arguments after "--": the file; then optionally an API key ("-" for none); then optionally
-- "idempotent" and a word unique to this run of wrk, to send an Idempotency-Key unique to each
-- request (the word, the wrk thread and a counter).

local thread_count = 0

function setup(thread)
   thread:set("thread_id", thread_count)
   thread_count = thread_count + 1
end

local body, headers, idempotent, run_word, fixed
local sent = 0

function init(args)
   local file = assert(io.open(args[1], "rb"))
   body = file:read("*a")
   file:close()
   headers = { ["Content-Type"] = "application/json" }
   if args[2] and args[2] ~= "-" then
      headers["X-API-Key"] = args[2]
   end
   idempotent = args[3] == "idempotent"
   run_word = args[4] or ""
   if not idempotent then
      fixed = wrk.format("POST", nil, headers, body)
   end
end

function request()
   if fixed then
      return fixed
   end
   sent = sent + 1
   headers["Idempotency-Key"] = run_word .. "-" .. thread_id .. "-" .. sent
   return wrk.format("POST", nil, headers, body)
end
