//! The trains' side of a railcast credentials file: its `[trains]` table (train id → token).
//! The server's `auth_file` and its generated `credentials_out` have this shape
//! (`docs/security.md`); the other tables are for the server and are ignored here.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;

#[derive(Debug, serde::Deserialize)]
struct File {
    #[serde(default)]
    trains: BTreeMap<String, String>,
}

/// Train id → token, from the file's `[trains]` table.
pub fn train_tokens(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: File = toml::from_str(&text).with_context(|| format!("{} is not a credentials file", path.display()))?;
    Ok(file.trains)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_trains_table_and_ignores_the_rest() {
        let path = std::env::temp_dir().join(format!("railcast-sim-creds-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "[[clients]]\nname = \"a\"\nrole = \"admin\"\ntoken = \"x\"\n\n[trains]\n\"train-1\" = \"s1\"\n",
        )
        .expect("write");
        let t = train_tokens(&path).expect("parse");
        assert_eq!(t.get("train-1").map(String::as_str), Some("s1"));
        std::fs::write(&path, "trains = 3\n").expect("write");
        assert!(train_tokens(&path).is_err());
        let _ = std::fs::remove_file(&path);
    }
}
