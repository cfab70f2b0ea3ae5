//! Every export goes through the one boundary macro: a test over the
//! sources, so a new `extern "C" fn` without it fails here.

use std::path::PathBuf;

/// `(file, function name, first token of its body)` for every `extern "C" fn`.
fn exports() -> Vec<(String, String, String)> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&src)
        .expect("read ffi/src")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read source");
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("extern \"C\" fn ") {
            rest = &rest[at + "extern \"C\" fn ".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // The body starts at the first `{` after the signature's `)`.
            let sig_end = rest.find(')').expect("signature");
            let body = &rest[sig_end..];
            let open = body.find('{').expect("body");
            let first: String = body[open + 1..]
                .trim_start()
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            found.push((file.clone(), name, first));
        }
    }
    found
}

#[test]
fn every_extern_c_fn_is_wrapped_by_the_boundary_macro() {
    let exports = exports();
    assert!(exports.len() >= 26, "found {exports:?}");
    let unwrapped: Vec<_> = exports
        .iter()
        .filter(|(_, _, first)| first != "boundary!")
        .collect();
    assert!(
        unwrapped.is_empty(),
        "not wrapped by boundary!: {unwrapped:?}"
    );
}

#[test]
fn every_extern_c_fn_is_named_ratecard_and_not_mangled() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    for (file, name, _) in exports() {
        assert!(name.starts_with("ratecard_"), "{file}: {name}");
        let text = std::fs::read_to_string(src.join(&file)).unwrap();
        let at = text.find(&format!("extern \"C\" fn {name}(")).unwrap();
        let before = &text[..at];
        let attr = before.rfind("#[no_mangle]").expect("no_mangle");
        // Only `pub`/`unsafe` may stand between the attribute and the fn.
        let between = before[attr + "#[no_mangle]".len()..].trim();
        assert!(
            matches!(between, "pub" | "pub unsafe"),
            "{file}: {name}: {between:?}"
        );
    }
}
