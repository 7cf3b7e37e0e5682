//! Marked sections of BENCHMARKS.md: `<!-- NAME:start -->` ... `<!-- NAME:end -->`. Each bench
//! owns its sections and replaces only those, so the file keeps every other bench's last numbers.

use std::path::{Path, PathBuf};

pub fn benchmarks_md() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md")
}

fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- {name}:start -->"),
        format!("<!-- {name}:end -->"),
    )
}

/// `text` with section `name` holding `body`: replaced where it is, or appended at the end.
pub fn replace(text: &str, name: &str, body: &str) -> String {
    let (start, end) = markers(name);
    let section = format!("{start}\n{}\n{end}\n", body.trim_end());
    let found = text
        .find(&start)
        .and_then(|at| Some((at, at + text[at..].find(&end)? + end.len())));
    match found {
        Some((at, stop)) => match text[stop..].trim_start_matches('\n') {
            "" => format!("{}{section}", &text[..at]),
            rest => format!("{}{section}\n{rest}", &text[..at]),
        },
        None => format!("{}\n\n{section}", text.trim_end()),
    }
}

/// Every complete marked section of `text`, markers included, in order.
pub fn marked(text: &str) -> Vec<&str> {
    let mut sections = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<!-- ") {
        let tail = &rest[start..];
        let Some(name_end) = tail.find(":start -->") else {
            break;
        };
        let (_, end_marker) = markers(&tail[5..name_end]);
        let Some(end) = tail.find(&end_marker) else {
            break;
        };
        let stop = end + end_marker.len();
        sections.push(&tail[..stop]);
        rest = &tail[stop..];
    }
    sections
}

/// Sets section `name` of BENCHMARKS.md to `body`, leaving everything else as it is.
pub fn write(name: &str, body: &str) -> std::io::Result<PathBuf> {
    let path = benchmarks_md();
    let current = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
    std::fs::write(&path, replace(&current, name, body))?;
    Ok(path)
}
