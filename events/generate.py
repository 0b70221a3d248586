"""Regenerates the API Gateway (HTTP API, payload v2) sample events in this folder.

Signs and encrypts with its own WXBizMsgCrypt (Python `cryptography`), independent of the
Rust code the events test. Credentials come from events/wxdesk.toml (test values only).
usage: python3 events/generate.py
"""

import base64
import hashlib
import json
import os
import struct
import urllib.parse

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

HERE = os.path.dirname(os.path.abspath(__file__))
OA, MP, TOKEN = "wxevents00000001", "wxeventsmp000002", "events-token"
IM = "wxeventsim000003"
TIM = "wxeventstim00004"
BOT = "wxeventsbot00005"
PLAIN = "wxeventsplain006"
BOT_PLATFORM, BOT_KEY = "wxchatbotplatform1", "chatbotKEY0123456789abcdefghijklmnopqrstuvw"
AES_KEY = "eventsAESkey0000000000000000000000000000001"
# The third-party platform ([component] in events/wxdesk.toml).
COMPONENT, COMPONENT_TOKEN = "wxeventscomp0007", "events-component-token"
COMPONENT_KEY = "eventsCOMPONENTkey0000000000000000000000001"
# A shop that authorized the platform: its pushes come to the platform's message URL.
SHOP = "wxeventsshop0008"
TS, NONCE, OPENID = 1714112445, "1320562132", "oEventsUser0000000000000001"


def sha1_sorted(*parts):
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def wx_encrypt(msg, appid, key_b64, random16=b"0123456789abcdef"):
    key = base64.b64decode(key_b64 + "=")
    raw = random16 + struct.pack(">I", len(msg.encode())) + msg.encode() + appid.encode()
    pad = 32 - len(raw) % 32
    raw += bytes([pad]) * pad
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(raw) + enc.finalize()).decode()


def event(method, appid, query, body="", content_type="text/xml", path=None, route_key="ANY /wechat/{appid}",
          path_parameters=None, base64_body=False):
    raw_query = urllib.parse.urlencode(query)
    path = path or f"/wechat/{appid}"
    return {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": {"content-type": content_type, "host": "example.execute-api.us-east-1.amazonaws.com", "user-agent": "Mozilla/4.0"},
        "queryStringParameters": query,
        "pathParameters": path_parameters or {"appid": appid},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "example",
            "domainName": "example.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "example",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "101.226.103.0", "userAgent": "Mozilla/4.0"},
            "requestId": "sample-request-id",
            "routeKey": route_key,
            "stage": "$default",
            "time": "26/Apr/2024:06:20:45 +0000",
            "timeEpoch": TS * 1000,
        },
        "body": base64.b64encode(body).decode() if base64_body else body,
        "isBase64Encoded": base64_body,
    }


GATEWAY_KEY = "events-gateway-key-not-real"
# The Dialogue Platform's hand-off URL carries a key of its own ([apps.chatbot] gateway_key).
HANDOFF_KEY = "events-handoff-key-not-real"


def udesk(method, query, body="", content_type="application/x-www-form-urlencoded", suffix="", base64_body=False):
    """A call from Udesk to the simulated WeChat domain of the events' Official Account."""
    path = f"/udesk/{OA}/{GATEWAY_KEY}{suffix}"
    return event(method, OA, query, body, content_type, path=path, route_key=f"ANY /udesk/{{appid}}/{{key}}{suffix}",
                 path_parameters={"appid": OA, "key": GATEWAY_KEY}, base64_body=base64_body)


def plain_query(ts=TS, nonce=NONCE):
    return {"signature": sha1_sorted(TOKEN, str(ts), nonce), "timestamp": str(ts), "nonce": nonce, "openid": OPENID}


def xml_push(msg_type, fields, msg_id=None):
    parts = [f"<ToUserName><![CDATA[gh_events0001]]></ToUserName>", f"<FromUserName><![CDATA[{OPENID}]]></FromUserName>",
             f"<CreateTime>{TS}</CreateTime>", f"<MsgType><![CDATA[{msg_type}]]></MsgType>"]
    for k, v in fields:
        parts.append(f"<{k}>{v}</{k}>" if isinstance(v, (int, float)) else f"<{k}><![CDATA[{v}]]></{k}>")
    if msg_id is not None:
        parts.append(f"<MsgId>{msg_id}</MsgId>")
    return "<xml>" + "".join(parts) + "</xml>"


def json_push(msg_type, fields, msg_id=None):
    d = {"ToUserName": "gh_eventsmp02", "FromUserName": OPENID, "CreateTime": TS, "MsgType": msg_type}
    d.update(fields)
    if msg_id is not None:
        d["MsgId"] = msg_id
    return json.dumps(d, ensure_ascii=False)


def main():
    out = {}
    out["verify-get"] = event("GET", OA, dict(plain_query(), echostr="4375120948345356249"), "")
    messages = {
        "text": ("text", [("Content", "When do the new children's clothes arrive?")], 24000000000000001),
        "image": ("image", [("PicUrl", "http://mmbiz.qpic.cn/sample.jpg"), ("MediaId", "media_image_1")], 24000000000000002),
        "voice": ("voice", [("MediaId", "media_voice_1"), ("Format", "amr"), ("Recognition", "")], 24000000000000003),
        "video": ("video", [("MediaId", "media_video_1"), ("ThumbMediaId", "thumb_1")], 24000000000000004),
        "shortvideo": ("shortvideo", [("MediaId", "media_sv_1"), ("ThumbMediaId", "thumb_2")], 24000000000000005),
        "location": ("location", [("Location_X", 23.134521), ("Location_Y", 113.358803), ("Scale", 20), ("Label", "Guangzhou")], 24000000000000006),
        "link": ("link", [("Title", "Order 1234"), ("Description", "my order"), ("Url", "https://example.com/o/1234")], 24000000000000007),
    }
    for name, (t, f, mid) in messages.items():
        out[f"message-{name}"] = event("POST", PLAIN, plain_query(), xml_push(t, f, mid))
    events = {
        "subscribe": [("Event", "subscribe"), ("EventKey", "")],
        "subscribe-qrscene": [("Event", "subscribe"), ("EventKey", "qrscene_123123"), ("Ticket", "TICKET")],
        "unsubscribe": [("Event", "unsubscribe"), ("EventKey", "")],
        "scan": [("Event", "SCAN"), ("EventKey", "123123"), ("Ticket", "TICKET")],
        "location": [("Event", "LOCATION"), ("Latitude", 23.137466), ("Longitude", 113.352425), ("Precision", 119.385040)],
        "click": [("Event", "CLICK"), ("EventKey", "CONTACT_AGENT")],
        "view": [("Event", "VIEW"), ("EventKey", "https://example.com/shop"), ("MenuId", 1)],
        "templatesendjobfinish": [("Event", "TEMPLATESENDJOBFINISH"), ("MsgID", 200163836), ("Status", "success")],
        "kf-create-session": [("Event", "kf_create_session"), ("KfAccount", "test1@test")],
        "kf-close-session": [("Event", "kf_close_session"), ("KfAccount", "test1@test")],
        "kf-switch-session": [("Event", "kf_switch_session"), ("FromKfAccount", "test1@test"), ("ToKfAccount", "test2@test")],
    }
    for name, f in events.items():
        out[f"event-{name}"] = event("POST", PLAIN, plain_query(), xml_push("event", f))
    # Mini Program pushes in JSON ("Customer service messages: receiving messages", https://developers.weixin.qq.com/miniprogram/dev/framework/open-ability/customer-message/receive.html) under an XML content type, as some arrive.
    out["mp-json-text"] = event("POST", MP, plain_query(), json_push("text", {"Content": "this is a test"}, 1234567890123456), "text/xml")
    out["mp-json-miniprogrampage"] = event("POST", MP, plain_query(), json_push("miniprogrampage", {
        "Title": "Spring sale", "AppId": MP, "PagePath": "pages/sale/index", "ThumbUrl": "http://mmbiz.qpic.cn/t.jpg", "ThumbMediaId": "thumb_3"}, 24000000000000008))
    out["mp-json-user-enter-tempsession"] = event("POST", MP, plain_query(), json_push("event", {"Event": "user_enter_tempsession", "SessionFrom": "sessionFrom"}))
    # Safe mode, XML.
    plain = xml_push("text", [("Content", "safe mode hello")], 24000000000000009)
    enc = wx_encrypt(plain, OA, AES_KEY)
    q = dict(plain_query(), encrypt_type="aes", msg_signature=sha1_sorted(TOKEN, str(TS), NONCE, enc))
    out["safe-mode-text"] = event("POST", OA, q, f"<xml><ToUserName><![CDATA[gh_events0001]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>")
    # The official encrypted JSON vector, verbatim.
    official = "+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04="
    oq = {"signature": "6c5c811b55cc85e0e1b54100749188c20beb3f5d", "timestamp": "1714112445", "nonce": "415670741",
          "openid": "o9AgO5Kd5ggOC-bXrbNODIiE3bGY", "encrypt_type": "aes", "msg_signature": "046e02f8204d34f8ba5fa3b1db94908f3df2e9b3"}
    assert sha1_sorted("AAAAA", "1714112445", "415670741", official) == oq["msg_signature"]
    out["official-encrypted-json"] = event("POST", "wxba5fad812f8e6fb9", oq, json.dumps({"ToUserName": "gh_97417a04a28d", "Encrypt": official}), "application/json")
    # Udesk calling the simulated WeChat domain (Udesk, "WeChat simulated middleware", sections 2-7), its own examples.
    out["udesk-send-text"] = udesk("POST", {}, "touser=o2IGD0a1OvYAEBfPRa8t34Wc2nUo&msgtype=text&text[content]=123")
    out["udesk-send-news"] = udesk("POST", {}, urllib.parse.urlencode([
        ("touser", OPENID), ("msgtype", "news"), ("news[articles][0][title]", "New arrivals"),
        ("news[articles][0][description]", "Spring collection"), ("news[articles][0][url]", "https://example.com/spring"),
        ("news[articles][0][picurl]", "https://example.com/spring.jpg")]))
    out["udesk-send-json-image"] = udesk("POST", {}, json.dumps({"touser": OPENID, "msgtype": "image", "image": {"media_id": "MEDIA_1"}}),
                                         "application/json")
    png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + bytes(40)
    boundary = "------------------------d74496d66958873e"
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"test.png\"\r\n"
                 f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    out["udesk-upload-image"] = udesk("POST", {"type": "image"}, multipart, f"multipart/form-data; boundary={boundary}", base64_body=True)
    out["udesk-media-get"] = udesk("GET", {"media_id": "MEDIA_1", "access_token": "udesk-virtual-token"}, "", "text/plain")
    out["udesk-user-info"] = udesk("GET", {"openid": "o-NbF1HPuegFK5sa1psr7EEeSTSg", "lang": "zh_CN"}, "", "text/plain")
    out["udesk-template-list"] = udesk("GET", {}, "", "text/plain", suffix="/template/get_all_private_template")
    out["udesk-template-send"] = udesk("POST", {}, json.dumps({
        "touser": "OPENID", "template_id": "ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY", "url": "http://weixin.qq.com/download",
        "miniprogram": {"appid": "xiaochengxuappid12345", "pagepath": "index?foo=bar"},
        "data": {"first": {"value": "Congratulations on your successful purchase!", "color": "#173177"},
                 "keyword1": {"value": "Chocolate", "color": "#173177"}, "remark": {"value": "Welcome to buy again!", "color": "#173177"}}}),
        "application/json", suffix="/message/template/send")
    # Udesk's message interface pushing an agent's message (the sign on the query, as Udesk's message-interface page gives it).
    im_ts = "20240426142045"
    im_sign = hashlib.md5(f"number=&email=&timestamp={im_ts}&events-im-key-not-real".encode()).hexdigest().upper()
    im_query = {"number": "", "email": "", "timestamp": im_ts, "sign": im_sign}
    for name, body, ctype in [
        ("udesk-im-push-text", urllib.parse.urlencode([("touser", OPENID), ("msgtype", "text"), ("text[content]", "Your parcel left the warehouse today.")]),
         "application/x-www-form-urlencoded"),
        ("udesk-im-push-json-news", json.dumps({"touser": OPENID, "msgtype": "news", "news": {"articles": [
            {"title": "Tracking", "description": "Follow your parcel", "url": "https://example.com/track/1234", "picurl": "https://example.com/p.jpg"}]}}),
         "application/json"),
    ]:
        out[name] = event("POST", IM, im_query, body, ctype, path=f"/udesk-im/{IM}/{GATEWAY_KEY}",
                          route_key="POST /udesk-im/{appid}/{key}", path_parameters={"appid": IM, "key": GATEWAY_KEY})
    # Tencent IM's after-send callback for an agent's reply (Sign as Tencent makes it).
    rt = TS
    tim_query = {"SdkAppid": "1400000000", "CallbackCommand": "C2C.CallbackAfterSendMsg", "contenttype": "json",
                 "ClientIP": "10.0.0.1", "OptPlatform": "RESTAPI",
                 "Sign": hashlib.sha256(f"events-tim-token{rt}".encode()).hexdigest(), "RequestTime": str(rt)}
    def after_send(key, body):
        return json.dumps({"CallbackCommand": "C2C.CallbackAfterSendMsg", "From_Account": "agent1", "To_Account": OPENID,
                           "MsgSeq": 48374, "MsgRandom": 2837546, "MsgTime": TS, "MsgKey": key, "OnlineOnlyFlag": 0,
                           "SendMsgResult": 0, "ErrorInfo": "send msg succeed", "UnreadMsgNum": 0, "MsgBody": body,
                           "CloudCustomData": ""}, ensure_ascii=False)
    out["tim-callback-text"] = event("POST", TIM, tim_query, after_send("89541_2574206_1572870301", [
        {"MsgType": "TIMTextElem", "MsgContent": {"Text": "Your parcel ships today."}}]), "application/json",
        path=f"/tim/{TIM}/{GATEWAY_KEY}", route_key="POST /tim/{appid}/{key}", path_parameters={"appid": TIM, "key": GATEWAY_KEY})
    out["tim-callback-custom"] = event("POST", TIM, tim_query, after_send("89541_2574206_1572870302", [
        {"MsgType": "TIMCustomElem", "MsgContent": {"Data": "order:1234", "Desc": "Order 1234 is on its way", "Ext": ""}}]),
        "application/json", path=f"/tim/{TIM}/{GATEWAY_KEY}", route_key="POST /tim/{appid}/{key}",
        path_parameters={"appid": TIM, "key": GATEWAY_KEY})
    # TUIKit's customer-service plugin: a branch menu (src 15, as TUICustomerServiceMessageParser
    # reads it), and TUIKit's C2C typing state, which it sends online-only.
    branch = {"customerServicePlugin": 0, "src": "15", "content": {"header": "What can we help with?",
              "items": [{"content": "Order status", "desc": ""}, {"content": "Returns", "desc": ""}], "tail": ""}}
    out["tim-callback-tuikit-branch"] = event("POST", TIM, tim_query, after_send("89541_2574206_1572870303", [
        {"MsgType": "TIMCustomElem", "MsgContent": {"Data": json.dumps(branch, ensure_ascii=False), "Desc": "", "Ext": ""}}]),
        "application/json", path=f"/tim/{TIM}/{GATEWAY_KEY}", route_key="POST /tim/{appid}/{key}",
        path_parameters={"appid": TIM, "key": GATEWAY_KEY})
    typing = {"businessID": "user_typing_status", "typingStatus": 1, "version": 1, "userAction": 14,
              "actionParam": "EIMAMSG_InputStatus_Ing"}
    typing_body = json.loads(after_send("89541_2574206_1572870304", [
        {"MsgType": "TIMCustomElem", "MsgContent": {"Data": json.dumps(typing), "Desc": "", "Ext": ""}}]))
    typing_body["OnlineOnlyFlag"] = 1
    out["tim-callback-tuikit-typing"] = event("POST", TIM, tim_query, json.dumps(typing_body, ensure_ascii=False),
        "application/json", path=f"/tim/{TIM}/{GATEWAY_KEY}", route_key="POST /tim/{appid}/{key}",
        path_parameters={"appid": TIM, "key": GATEWAY_KEY})
    # The Dialogue Platform: its hand-off callback (a customer asking for a person) and a
    # desk driving a waiter event.
    handoff = (f"<xml><userid><![CDATA[{OPENID}]]></userid><appid><![CDATA[{BOT_PLATFORM}]]></appid>"
               f"<content><msg><![CDATA[]]></msg></content><event><![CDATA[userEnter]]></event><from>0</from>"
               f"<kfstate>3</kfstate><channel>0</channel><assessment>0</assessment><createtime>{TS}</createtime></xml>")
    out["chatbot-handoff-needperson"] = event("POST", BOT, {}, json.dumps({"encrypted": wx_encrypt(handoff, BOT_PLATFORM, BOT_KEY)}),
                                               "application/json", path=f"/chatbot/{BOT}/{HANDOFF_KEY}",
                                               route_key="POST /chatbot/{appid}/{key}",
                                               path_parameters={"appid": BOT, "key": HANDOFF_KEY})
    out["chatbot-event-quit"] = event("POST", BOT, {}, json.dumps({"openid": OPENID, "event": "waiterQuit", "kefuname": "Alice",
                                                                   "msg": "Thanks for chatting with us!"}),
                                      "application/json", path=f"/chatbot/{BOT}/{GATEWAY_KEY}/event",
                                      route_key="POST /chatbot/{appid}/{key}/event",
                                      path_parameters={"appid": BOT, "key": GATEWAY_KEY})
    # WeChat's component_verify_ticket push to the platform's authorization-event URL:
    # signed with the platform's token, encrypted with its key for its appid.
    ticket = (f"<xml><AppId><![CDATA[{COMPONENT}]]></AppId><CreateTime>{TS}</CreateTime>"
              f"<InfoType><![CDATA[component_verify_ticket]]></InfoType>"
              f"<ComponentVerifyTicket><![CDATA[ticket@@@events-sample]]></ComponentVerifyTicket></xml>")
    enc = wx_encrypt(ticket, COMPONENT, COMPONENT_KEY)
    out["component-ticket"] = event("POST", COMPONENT, {
        "signature": sha1_sorted(COMPONENT_TOKEN, str(TS), NONCE), "timestamp": str(TS), "nonce": NONCE,
        "encrypt_type": "aes", "msg_signature": sha1_sorted(COMPONENT_TOKEN, str(TS), NONCE, enc)},
        f"<xml><AppId><![CDATA[{COMPONENT}]]></AppId><Encrypt><![CDATA[{enc}]]></Encrypt></xml>",
        path=f"/component/{COMPONENT}/events", route_key="POST /component/{appid}/events")
    # A shop's customer writes: WeChat pushes to the platform's message URL ($APPID$ = the
    # shop), signed with the platform's token, encrypted with its key for the platform's appid.
    text = (f"<xml><ToUserName><![CDATA[gh_eventsshop]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
            f"<CreateTime>{TS}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[Is my order shipped?]]></Content><MsgId>23800000000000008</MsgId></xml>")
    enc = wx_encrypt(text, COMPONENT, COMPONENT_KEY)
    out["component-push-text"] = event("POST", SHOP, {
        "signature": sha1_sorted(COMPONENT_TOKEN, str(TS), NONCE), "timestamp": str(TS), "nonce": NONCE,
        "encrypt_type": "aes", "msg_signature": sha1_sorted(COMPONENT_TOKEN, str(TS), NONCE, enc)},
        f"<xml><ToUserName><![CDATA[gh_eventsshop]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>",
        path=f"/wechat/component/{COMPONENT}/{SHOP}", route_key="POST /wechat/component/{platform}/{appid}",
        path_parameters={"platform": COMPONENT, "appid": SHOP})
    # The token-refresher's EventBridge schedule.
    out["schedule-token-refresher"] = {
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2024-04-26T06:20:45Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/wxdesk-token-refresher"], "detail": {}}
    # deliver-worker: a batch from the SQS FIFO delivery queue (the job of the first Tencent IM
    # callback above) and the outbox sweep's schedule.
    job = json.dumps({"key": f"{TIM}#tim#89541_2574206_1572870301", "group": f"{TIM}#out#{OPENID}", "generation": 0})
    out["deliver-worker-sqs"] = {"Records": [{
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d", "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
        "body": job, "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(TS * 1000),
                                     "MessageGroupId": hashlib.sha256(f"{TIM}#out#{OPENID}\0".encode()).hexdigest()[:32],
                                     "MessageDeduplicationId": hashlib.sha256(job.encode()).hexdigest(),
                                     "ApproximateFirstReceiveTimestamp": str(TS * 1000)},
        "messageAttributes": {}, "md5OfBody": hashlib.md5(job.encode()).hexdigest(), "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:wxdesk-DeliveryQueue.fifo", "awsRegion": "us-east-1"}]}
    out["schedule-outbox-sweep"] = {
        "version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2024-04-26T06:21:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/wxdesk-outbox-sweep"], "detail": {}}
    for name, ev in out.items():
        with open(os.path.join(HERE, f"{name}.json"), "w") as f:
            json.dump(ev, f, indent=2, ensure_ascii=False)
            f.write("\n")
    print(f"wrote {len(out)} events")


if __name__ == "__main__":
    main()
