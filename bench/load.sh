#!/usr/bin/env bash
# Load test of the local server: plain text pushes, every one a new message, against a desk
# (nginx) that answers at once. Needs wrk and nginx (apt-get install wrk nginx-light) and
# a release build: cargo build --release -p wxdesk-local
# usage: bash bench/load.sh [duration=20s] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-20s}
conns=${2:-64}
rm -rf /tmp/wxdesk-bench-data
nginx -c "$PWD/bench/desk-nginx.conf" &
desk=$!
RUST_LOG=warn target/release/wxdesk-local --config bench/wxdesk-bench.toml --listen 127.0.0.1:18080 &
server=$!
trap 'kill $server $desk 2>/dev/null' EXIT
sleep 1
# signature = sha1(sorted["bench-token", "1714112445", "42"])
query="signature=06f66cd910da66519090241347f2dbe52b3d3551&timestamp=1714112445&nonce=42&openid=oBenchUser"
url="http://127.0.0.1:18080/wechat/wxbench000000001?$query"
echo "== new messages (claim, forward, record) =="
wrk -t2 -c"$conns" -d"$duration" --latency -s bench/push.lua "$url"
echo "== one message repeated (WeChat's retries: answered from the store, not forwarded) =="
cat > /tmp/wxdesk-bench-dup.lua <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/xml"
wrk.body = "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[oBenchUser]]></FromUserName><CreateTime>1714112445</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[retry]]></Content><MsgId>1</MsgId></xml>"
LUA
wrk -t2 -c"$conns" -d"$duration" --latency -s /tmp/wxdesk-bench-dup.lua "$url"
echo "== new messages, each signed on its own with the freshness check on (the plain-mode binding) =="
rm -rf /tmp/wxdesk-bench-data-bound
RUST_LOG=warn target/release/wxdesk-local --config bench/wxdesk-bench-bound.toml --listen 127.0.0.1:18082 &
bound=$!
trap 'kill $server $desk $bound 2>/dev/null' EXIT
# One signed query per request, signed now (WeChat's nonces are random): 400,000 covers
# 20 s at 20,000 requests/s.
python3 - <<'PY'
import hashlib, time
ts = str(int(time.time()))
with open("/tmp/wxdesk-bench-queries", "w") as f:
    for n in range(400_000):
        nonce = str(n)
        sig = hashlib.sha1("".join(sorted(["bench-token", ts, nonce])).encode()).hexdigest()
        f.write(f"signature={sig}&timestamp={ts}&nonce={nonce}&openid=oBenchUser\n")
PY
sleep 1
wrk -t2 -c"$conns" -d"$duration" --latency -s bench/push-bound.lua "http://127.0.0.1:18082/"

