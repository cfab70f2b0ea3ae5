//! One version in three places: the workspace's Cargo.toml, the header's
//! `RATECARD_VERSION_*` macros, and `ratecard_version()` of the library.
//! Each is read from its own source here (the file's text, the header's
//! text, the compiled function), so a release that bumps one and not the
//! others fails.

use std::ffi::CStr;
use std::path::PathBuf;
use std::process::Command;

fn repo_file(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `version = "x.y.z"` of `[workspace.package]` in the workspace manifest.
fn cargo_toml_version() -> String {
    let text = repo_file("Cargo.toml");
    let mut in_section = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line == "[workspace.package]";
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some(rest) = line.strip_prefix("version") {
            let value = rest.trim_start().strip_prefix('=').expect("version = ...");
            return value.trim().trim_matches('"').to_string();
        }
    }
    panic!("no version in [workspace.package] of Cargo.toml");
}

/// The value of `#define NAME <integer>` in include/ratecard.h.
fn header_number(name: &str) -> u32 {
    let text = repo_file("include/ratecard.h");
    let prefix = format!("#define {name} ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("include/ratecard.h defines no {name}"));
    line[prefix.len()..]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn library_version() -> String {
    let ptr = ratecard::ratecard_version();
    assert!(!ptr.is_null());
    // SAFETY: ratecard_version() returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .expect("ASCII version")
        .to_string()
}

#[test]
fn library_version_equals_cargo_toml_version() {
    assert_eq!(library_version(), cargo_toml_version());
}

#[test]
fn header_version_macros_equal_cargo_toml_version() {
    let header = format!(
        "{}.{}.{}",
        header_number("RATECARD_VERSION_MAJOR"),
        header_number("RATECARD_VERSION_MINOR"),
        header_number("RATECARD_VERSION_PATCH"),
    );
    assert_eq!(header, cargo_toml_version());
}

#[test]
fn header_version_string_compiled_by_c_equals_cargo_toml_version() {
    // The string macro is stringification, so ask a C compiler what it makes.
    let dir = std::env::temp_dir().join(format!("ratecard-version-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let src = dir.join("version.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n\
         #include \"ratecard.h\"\n\
         int main(void) { fputs(RATECARD_VERSION, stdout); return 0; }\n",
    )
    .expect("write source");
    let exe = dir.join("version");
    let include = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../include");
    let cc = Command::new("gcc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run gcc");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let run = Command::new(&exe).output().expect("run version");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(String::from_utf8_lossy(&run.stdout), cargo_toml_version());
}

#[test]
fn rust_constants_equal_the_library_version() {
    let rust = format!(
        "{}.{}.{}",
        ratecard::RATECARD_VERSION_MAJOR,
        ratecard::RATECARD_VERSION_MINOR,
        ratecard::RATECARD_VERSION_PATCH
    );
    assert_eq!(rust, library_version());
}
