//! The push pipeline without I/O: verify + decrypt + parse + the desk's re-serialized
//! copy + dedup key + encrypted reply,
//! for a safe-mode text push (XML) and the official encrypted JSON vector.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use wxdesk::wechat::crypto::MsgCrypt;
use wxdesk::wechat::message::{Format, Message};
use wxdesk::wechat::reply::{encrypt_field, encrypt_reply};
use wxdesk::wechat::signature::{matches, msg_signature, push_signature};

const TOKEN: &str = "bench-token";
const APPID: &str = "wxbench000000001";
const REPLY: &str = "<xml><ToUserName><![CDATA[oUser]]></ToUserName><FromUserName><![CDATA[gh_bench]]></FromUserName>\
<CreateTime>1714112445</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[An agent will be with you shortly]]></Content></xml>";

/// One signed, encrypted push as WeChat delivers it.
struct Push<'a> {
    crypt: &'a MsgCrypt,
    token: &'a str,
    appid: &'a str,
    ts: &'a str,
    nonce: &'a str,
    signature: &'a str,
    msg_signature: &'a str,
    body: &'a str,
    format: Format,
}

fn pipeline(p: &Push<'_>) -> String {
    assert!(matches(
        &push_signature(p.token, p.ts, p.nonce),
        p.signature
    ));
    let enc = encrypt_field(black_box(p.body), p.format).expect("Encrypt");
    assert!(matches(
        &msg_signature(p.token, p.ts, p.nonce, &enc),
        p.msg_signature
    ));
    let plain = p.crypt.decrypt(&enc, p.appid).expect("decrypt");
    let msg = Message::parse(&plain).expect("parse");
    // What the desk gets: the push re-serialized, never its bytes as received.
    black_box(msg.to_xml());
    black_box(msg.dedup_key(p.appid));
    encrypt_reply(REPLY, p.format, p.crypt, p.token, p.appid, p.ts, p.nonce)
}

fn bench(c: &mut Criterion) {
    let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    let crypt = MsgCrypt::new(key).unwrap();
    let (ts, nonce) = ("1714112445", "415670741");
    let push = "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[oUser0000000000000000000001]]></FromUserName>\
<CreateTime>1714112445</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[When do the new children's clothes arrive?]]></Content>\
<MsgId>24000000000000001</MsgId></xml>";
    let enc = crypt.encrypt(push, APPID);
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"
    );
    let sig = push_signature(TOKEN, ts, nonce);
    let msig = msg_signature(TOKEN, ts, nonce, &enc);
    let xml = Push {
        crypt: &crypt,
        token: TOKEN,
        appid: APPID,
        ts,
        nonce,
        signature: &sig,
        msg_signature: &msig,
        body: &body,
        format: Format::Xml,
    };
    c.bench_function("safe_mode_xml_text_push", |b| b.iter(|| pipeline(&xml)));

    let official = MsgCrypt::new(&"A".repeat(43)).unwrap();
    let oenc = include_str!("../../tests/fixtures/official_vector_encrypt.txt").trim();
    let obody = format!("{{\"ToUserName\":\"gh_97417a04a28d\",\"Encrypt\":\"{oenc}\"}}");
    let json = Push {
        crypt: &official,
        token: "AAAAA",
        appid: "wxba5fad812f8e6fb9",
        ts: "1714112445",
        nonce: "415670741",
        signature: "6c5c811b55cc85e0e1b54100749188c20beb3f5d",
        msg_signature: "046e02f8204d34f8ba5fa3b1db94908f3df2e9b3",
        body: &obody,
        format: Format::Json,
    };
    c.bench_function("official_json_vector", |b| b.iter(|| pipeline(&json)));
}

criterion_group!(benches, bench);
criterion_main!(benches);
