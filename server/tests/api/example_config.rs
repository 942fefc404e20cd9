//! `railcast.example.toml` at the repository root is generated from the `settings!` table; this
//! fails when they differ, and checks that the file documents every setting and that, with every
//! setting uncommented, the server reads it and ends up with its defaults. Regenerate with
//! `RAILCAST_BLESS=1 cargo test -p railcast-server --test api example_config`.

use railcast_server::config::{example_toml, SETTINGS};

use crate::config_layers::run_raw;

#[test]
fn example_file_matches_the_settings_table() {
    let committed = testkit::committed_matches(
        "railcast.example.toml",
        &example_toml(),
        "RAILCAST_BLESS=1 cargo test -p railcast-server --test api example_config",
    );

    // Every setting is there, commented out (`#key = default`), under its doc and variable.
    let uncommented: String = committed
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.split_once(" = ").is_some_and(|(k, _)| SETTINGS.iter().any(|(s, _)| *s == k)) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let table: toml::Table = uncommented.parse().expect("the uncommented example is TOML");
    for (key, env) in SETTINGS {
        assert!(table.contains_key(*key), "railcast.example.toml lacks {key}");
        assert!(committed.contains(&format!("# Environment: {env}; flag: --{}", key.replace('_', "-"))), "{key}");
    }
    assert_eq!(table.len(), SETTINGS.len(), "keys that are not settings: {table:?}");

    // As it is, and uncommented, the server reads it; both are the defaults.
    let dir = testkit::scratch("example_config");
    let file = dir.join("uncommented.toml");
    std::fs::write(&file, &uncommented).expect("write");
    let (code, defaults, err) = run_raw(&["--check-config"], &[]);
    assert_eq!(code, 0, "{err}");
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../railcast.example.toml");
    for f in [shipped.as_path(), file.as_path()] {
        let (code, shown, err) = run_raw(&["--check-config", "--config", f.to_str().expect("utf8")], &[]);
        assert_eq!(code, 0, "{}: {err}", f.display());
        assert_eq!(shown, defaults, "{} gives other values than the defaults", f.display());
    }
    println!("railcast.example.toml: {} settings, {} lines", SETTINGS.len(), committed.lines().count());
}
