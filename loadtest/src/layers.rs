//! The folders' order, checked: a module may name (`crate::<folder>`) only
//! folders below its own in [`LAYERS`], so dependencies point one way and no
//! cycle can come back unnoticed; and no scenario names another. Read from
//! the sources, so it holds for tests too.

use std::path::{Path, PathBuf};

/// Lowest first. `baseline` is the baseline server, which only the command
/// line starts.
const LAYERS: [&str; 8] = [
    "wire",
    "measure",
    "report",
    "child",
    "fleet",
    "scenarios",
    "baseline",
    "cli",
];

fn rank(folder: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == folder)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("the crate's sources are readable");
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::` path in `code`, as its segments (a `crate::{a, b::c}`
/// group gives one path per item). Comments are skipped: a doc may point
/// anywhere.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    out.push(segments(item));
                }
            } else {
                out.push(segments(rest));
            }
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

fn segments(text: &str) -> Vec<String> {
    let path: String = text
        .trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    path.split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn folders_name_only_folders_below_them_and_scenarios_none_of_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("found under src");
        let parts: Vec<String> = relative
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        let Some(own) = rank(&parts[0]) else {
            // main.rs and this file sit above every folder.
            continue;
        };
        let code = std::fs::read_to_string(file).expect("a source file is readable");
        for path in crate_paths(&code) {
            let Some(named) = rank(&path[0]) else {
                wrong.push(format!(
                    "{}: crate::{} is in no layer",
                    relative.display(),
                    path[0]
                ));
                continue;
            };
            if named > own {
                wrong.push(format!(
                    "{}: names crate::{}, a layer above it",
                    relative.display(),
                    path.join("::")
                ));
            }
            if parts[0] == "scenarios"
                && path[0] == "scenarios"
                && path.get(1).is_some_and(|s| Some(s) != parts.get(1))
            {
                wrong.push(format!(
                    "{}: names crate::{}, another scenario",
                    relative.display(),
                    path.join("::")
                ));
            }
        }
    }
    assert!(files.len() > 40, "only {} sources found", files.len());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn crate_paths_are_found_in_groups_and_not_in_comments() {
    let code = "use crate::wire::client::{self, Target};\n\
                use crate::{measure, report::model};\n\
                // crate::cli is only talked of here\n\
                let x = crate::fleet::run::unix_time(); // crate::scenarios\n";
    let paths: Vec<String> = crate_paths(code).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        paths,
        [
            "wire::client",
            "measure",
            "report::model",
            "fleet::run::unix_time"
        ]
    );
}
