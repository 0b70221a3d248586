-- wrk script: plain-mode text pushes, each with a new MsgId so that every request is a new
-- message (claimed, forwarded, recorded) rather than a duplicate answered from the store.
-- The signature covers token, timestamp and nonce only, so one query serves every body.
local counter = 0
local start = os.time()
local threads = 0

-- Each wrk thread has its own Lua state: give each a number so MsgIds never collide.
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/xml"

request = function()
  counter = counter + 1
  local body = string.format(
    "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[oBenchUser]]></FromUserName>" ..
    "<CreateTime>1714112445</CreateTime><MsgType><![CDATA[text]]></MsgType>" ..
    "<Content><![CDATA[load test]]></Content><MsgId>%d%02d%09d</MsgId></xml>", start, tid or 0, counter)
  return wrk.format(nil, nil, nil, body)
end
