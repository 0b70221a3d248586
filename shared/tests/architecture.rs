//! The layer rules of `shared/src` (docs/architecture.md), checked on the source: every
//! `crate::` and `super::` path a module names must point to its own layer or one below,
//! with the connectors' extra rules, and the modules must form no circle.
//!
//! support, http, telemetry  <  wechat codecs  <  config  <  store  <  wechat clients
//!   <  context  <  {desk, transport}  <  {source, outbox}  <  app

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module's layer, lowest first.
fn layer(module: &str) -> Option<u8> {
    let top = module.split("::").next().unwrap_or("");
    Some(match top {
        "support" | "http" | "telemetry" => 0,
        "wechat" => match module.split("::").nth(1) {
            Some("api" | "token" | "media" | "quota" | "platform") => 4,
            _ => 1,
        },
        "config" => 2,
        "store" => 3,
        "context" => 5,
        "desk" | "transport" => 6,
        "source" | "outbox" => 7,
        "app" => 8,
        _ => return None,
    })
}

/// Every module of the crate, by path (`desk::udesk_im::sign`), with its source text
/// (tests left out: `use super::*` in a test module means the module itself).
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                let mut next = prefix.to_vec();
                next.push(name);
                walk(&p, &next, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let mut path = prefix.to_vec();
                if name != "mod" && name != "lib" {
                    path.push(name);
                }
                let text = std::fs::read_to_string(&p).unwrap();
                let text = match text.find("#[cfg(test)]\nmod tests") {
                    Some(i) => text[..i].to_owned(),
                    None => text,
                };
                out.insert(path.join("::"), text);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut out,
    );
    out
}

/// The module a path names: its longest prefix that is a module.
fn resolve(path: &[&str], known: &BTreeMap<String, String>) -> Option<String> {
    // Re-exports at the crate root.
    match path.first() {
        Some(&"Config") => return Some("config".into()),
        Some(&"Services") => return Some("app".into()),
        _ => {}
    }
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| known.contains_key(m))
}

/// The modules `text` (the source of `module`) names through `crate::` and `super::`.
fn references(module: &str, text: &str, known: &BTreeMap<String, String>) -> BTreeSet<String> {
    let is_mod_rs = known.keys().any(|k| k.starts_with(&format!("{module}::")));
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (anchor, base) in [
            ("crate::", Vec::new()),
            ("super::", {
                let mut parts: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
                // In `a/b/mod.rs` (module a::b) and `a/b/c.rs` (a::b::c) alike, `super` is
                // the parent of the module.
                let _ = is_mod_rs;
                parts.pop();
                parts
            }),
        ] {
            let mut rest = code;
            while let Some(i) = rest.find(anchor) {
                // `crate::` inside `wxdesk::crate::` cannot occur; skip `$crate::` macros.
                let tail = &rest[i + anchor.len()..];
                let path: Vec<&str> = tail
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .collect();
                let mut full: Vec<&str> = base.clone();
                full.extend(path);
                if let Some(m) = resolve(&full, known)
                    && m != module
                {
                    out.insert(m);
                }
                rest = tail;
            }
        }
    }
    out
}

fn connector(module: &str, top: &str) -> Option<String> {
    let mut parts = module.split("::");
    (parts.next() == Some(top))
        .then(|| parts.next().map(str::to_owned))
        .flatten()
}

fn violations(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut bad = Vec::new();
    for (from, tos) in graph {
        let Some(lf) = layer(from) else { continue };
        for to in tos {
            let Some(lt) = layer(to) else { continue };
            let why = if lt > lf {
                Some("imports a higher layer")
            } else if from.starts_with("desk::") && to.starts_with("transport") {
                Some("a desk imports the transport")
            } else if from.starts_with("desk::") && to == "http" {
                Some("a desk imports http")
            } else if connector(from, "desk").is_some()
                && connector(to, "desk").is_some()
                && connector(from, "desk") != connector(to, "desk")
            {
                Some("a desk imports a sibling desk")
            } else if from.starts_with("transport") && to.starts_with("desk") {
                Some("a transport imports a desk")
            } else if connector(from, "source").is_some()
                && connector(to, "source").is_some()
                && connector(from, "source") != connector(to, "source")
            {
                Some("a source imports another source")
            } else {
                None
            };
            if let Some(why) = why {
                bad.push(format!("{from} -> {to}: {why}"));
            }
        }
    }
    bad
}

/// Circles among modules; a parent naming its own child (`store` using
/// `embedded::EmbeddedStore`) is composition, not a circle.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let edges = |m: &String| -> Vec<String> {
        graph
            .get(m)
            .map(|t| {
                t.iter()
                    .filter(|to| !to.starts_with(&format!("{m}::")))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for start in graph.keys() {
        // Depth-first from each module, reporting a path back to it.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((m, path)) = stack.pop() {
            for next in edges(&m) {
                if &next == start {
                    let mut c = path.clone();
                    c.push(next.clone());
                    let key: BTreeSet<_> = c.iter().cloned().collect();
                    if done.insert(key.into_iter().collect::<Vec<_>>()) {
                        found.push(c);
                    }
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next, p));
                }
            }
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let known = modules();
    known
        .iter()
        .map(|(m, text)| (m.clone(), references(m, text, &known)))
        .collect()
}

#[test]
fn imports_follow_the_layers() {
    let g = graph();
    assert!(g.len() > 40, "the walk found only {} modules", g.len());
    for m in g.keys().filter(|m| !m.is_empty()) {
        assert!(
            layer(m).is_some(),
            "module {m} has no layer: add it to `layer`"
        );
    }
    let bad = violations(&g);
    assert!(bad.is_empty(), "layer violations:\n{}", bad.join("\n"));
}

#[test]
fn modules_form_no_circle() {
    let c = circles(&graph());
    assert!(
        c.is_empty(),
        "import circles:\n{}",
        c.iter()
            .map(|p| p.join(" -> "))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The checker itself catches what it should.
#[test]
fn the_checker_catches_violations_and_circles() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("desk::a", vec!["transport", "desk::b", "context", "desk"]),
        ("transport", vec!["desk::a"]),
        ("config", vec!["store"]),
        ("source::x", vec!["source::y", "desk::a"]),
        ("wechat::api", vec!["wechat::token"]),
        ("wechat::token", vec!["wechat::api"]),
        ("store", vec!["store::embedded"]),
        ("store::embedded", vec!["store"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    let bad = violations(&g);
    for want in [
        "desk::a -> transport: a desk imports the transport",
        "desk::a -> desk::b: a desk imports a sibling desk",
        "transport -> desk::a: a transport imports a desk",
        "config -> store: imports a higher layer",
        "source::x -> source::y: a source imports another source",
    ] {
        assert!(bad.iter().any(|b| b == want), "missed {want:?} in {bad:?}");
    }
    assert!(!bad.iter().any(|b| b.starts_with("desk::a -> context")));
    let c = circles(&g);
    assert!(
        c.iter().any(|p| p.contains(&"wechat::api".to_owned())),
        "{c:?}"
    );
    assert!(
        !c.iter().any(|p| p.contains(&"store::embedded".to_owned())),
        "a parent using its child is not a circle: {c:?}"
    );
}
