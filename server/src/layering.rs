//! The import rule, checked: dependencies point one way, signaling → transport → relay → hub →
//! protocol, and only `lib.rs` (the composition root) and `main.rs` name every transport.
//!
//! It reads the `crate::…` paths of every source file under `src/` (including grouped imports
//! `crate::{a, b}`), maps each file to its module, and fails on a path its module may not use.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The top-level module a source file belongs to, with `transport/ws` and `signaling/rest`
/// kept apart: `"hub"`, `"transport/ws"`, `"lib.rs"`.
fn module_of(rel: &Path) -> String {
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    match parts.as_slice() {
        [file] => file.strip_suffix(".rs").filter(|m| *m != "lib" && *m != "main").map_or(file.clone(), String::from),
        [group, sub, ..] if group == "transport" || group == "signaling" => {
            format!("{group}/{}", sub.strip_suffix(".rs").unwrap_or(sub))
        }
        [dir, ..] => dir.clone(),
        [] => String::new(),
    }
}

/// The modules a file names through `crate::` (`"transport/ws"` for `crate::transport::ws`).
fn crate_paths(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code: String = source.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end].split(',').map(|s| s.trim().to_owned()).collect()
        } else {
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
            vec![rest[..end].to_owned()]
        };
        for name in names {
            let mut segs = name.split("::").filter(|s| !s.is_empty());
            match (segs.next(), segs.next()) {
                (Some(g @ ("transport" | "signaling")), Some(sub)) => out.insert(format!("{g}/{sub}")),
                (Some(g @ ("transport" | "signaling")), None) => out.insert(g.to_owned()),
                (Some(top), _) => out.insert(top.to_owned()),
                (None, _) => false,
            };
        }
    }
    out
}

/// What `module` may not name.
fn forbidden(module: &str, used: &str) -> bool {
    let upward = |list: &[&str]| list.iter().any(|m| used == *m || used.starts_with(&format!("{m}/")));
    let transport_or_signaling = used.starts_with("transport") || used.starts_with("signaling");
    match module {
        "lib.rs" | "main.rs" => false,
        "metrics" | "logging" => true,
        // A front-end may reach an ingest that speaks its protocol (signaling::whip → ingest::whip).
        m if m.starts_with("signaling/") => false,
        m if m.starts_with("transport/") => {
            // Its own folder, but no other transport and nothing above.
            (used.starts_with("transport/") && used != m) || upward(&["signaling", "api", "ingest"])
        }
        "hub" => {
            transport_or_signaling
                || upward(&["core", "relay", "api", "http", "ingest", "sessions", "record", "cluster"])
        }
        "core" => transport_or_signaling || upward(&["relay", "api", "http", "ingest", "record"]),
        "relay" => transport_or_signaling || upward(&["api", "http", "ingest"]),
        "http" => transport_or_signaling || upward(&["api", "relay", "ingest"]),
        "api" => transport_or_signaling || upward(&["relay", "ingest"]),
        // WHIP trains are WebRTC peers: ingest builds them with transport::webrtc's negotiation
        // (the same sockets, settings and candidate checks), and names no other transport.
        "ingest" => (transport_or_signaling && used != "transport/webrtc") || upward(&["relay", "api", "http"]),
        // A hub subscriber like a transport's session, with no client: the hub, core, config and
        // metrics, no transport, signaling, relay or API.
        "record" => transport_or_signaling || upward(&["relay", "api", "http", "ingest", "sessions"]),
        // Also a hub participant (a subscriber at the owner, a publisher at a mirror), with no client:
        // the hub, the configuration and the metrics only.
        "cluster" => {
            transport_or_signaling || upward(&["core", "relay", "api", "http", "ingest", "sessions", "record"])
        }
        // The leaves: config, auth, limits, remote, sessions, state_file, tls, layering.
        _ => transport_or_signaling || upward(&["core", "relay", "api", "http", "ingest", "record", "cluster"]),
    }
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every violation in the source tree at `src`: (file, the module it may not name).
fn violations(src: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    sources(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let module = module_of(rel);
        let text = std::fs::read_to_string(&file).expect("read source");
        // This file's own tests name modules on purpose.
        let text = if module == "layering" { text.split("#[cfg(test)]").next().unwrap_or("").to_owned() } else { text };
        for used in crate_paths(&text) {
            if forbidden(&module, &used) {
                found.push((rel.display().to_string(), used));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_point_one_way() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let found = violations(&src);
        assert!(found.is_empty(), "imports against the rule (file → module): {found:#?}");
    }

    #[test]
    fn the_checker_sees_violations() {
        assert_eq!(module_of(Path::new("hub/stream.rs")), "hub");
        assert_eq!(module_of(Path::new("transport/webrtc/peers.rs")), "transport/webrtc");
        assert_eq!(module_of(Path::new("signaling/rest.rs")), "signaling/rest");
        assert_eq!(module_of(Path::new("lib.rs")), "lib.rs");
        let used =
            crate_paths("use crate::transport::ws::Settings;\nuse crate::{hub::Hub, signaling};\n// crate::api\n");
        assert_eq!(used, ["hub", "signaling", "transport/ws"].into_iter().map(String::from).collect());
        assert!(forbidden("hub", "transport/ws"));
        assert!(forbidden("core", "signaling"));
        assert!(forbidden("transport/ws", "transport/webrtc"));
        assert!(forbidden("transport/webrtc", "signaling/rest"));
        assert!(forbidden("relay", "api"));
        assert!(forbidden("metrics", "core"));
        assert!(!forbidden("transport/ws", "transport/ws"));
        assert!(!forbidden("signaling/rest", "transport/webrtc"));
        assert!(!forbidden("lib.rs", "transport/ws"));
        assert!(!forbidden("relay", "hub"));
        assert!(!forbidden("ingest", "transport/webrtc"));
        assert!(forbidden("ingest", "transport/ws"));
        assert!(forbidden("transport/webrtc", "ingest"));
        assert!(!forbidden("signaling/whip", "ingest"));
        assert!(forbidden("record", "transport/ws"));
        assert!(forbidden("record", "relay"));
        assert!(!forbidden("record", "hub"));
        assert!(forbidden("hub", "record"));
        assert!(forbidden("hub", "cluster"));
        assert!(forbidden("cluster", "ingest"));
        assert!(forbidden("cluster", "transport/ws"));
        assert!(!forbidden("cluster", "hub"));
    }
}
