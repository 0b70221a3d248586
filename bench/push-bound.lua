-- wrk script: plain-mode text pushes as WeChat sends them, each with a nonce and
-- signature of its own (bench/load.sh writes them, signed now, to /tmp/wxdesk-bench-queries):
-- with the freshness check on, wxdesk binds every signature to its body (one conditional
-- write), so this measures that cost. Each thread takes every Nth query.
local queries = {}
local counter = 0
local threads = 0

setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
  thread:set("nthreads", 2)
end

init = function(args)
  local i = 0
  for line in io.lines("/tmp/wxdesk-bench-queries") do
    if i % nthreads == tid - 1 then
      queries[#queries + 1] = line
    end
    i = i + 1
  end
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "text/xml"

request = function()
  counter = counter + 1
  local q = queries[(counter - 1) % #queries + 1]
  local body = string.format(
    "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[oBenchUser]]></FromUserName>" ..
    "<CreateTime>1714112445</CreateTime><MsgType><![CDATA[text]]></MsgType>" ..
    "<Content><![CDATA[load test]]></Content><MsgId>%d%09d</MsgId></xml>", tid or 0, counter)
  return wrk.format(nil, "/wechat/wxbench000000001?" .. q, nil, body)
end
