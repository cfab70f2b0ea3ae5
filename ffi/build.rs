//! Link options of the shared library: a versioned SONAME, and a version
//! script so that only `ratecard_*` symbols are exported.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=ratecard.map");
    println!("cargo:rerun-if-changed=build.rs");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    // GNU ld and lld on ELF targets; other platforms keep rustc's defaults.
    if matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd"
    ) {
        let dir = env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libratecard.so.0");
        println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/ratecard.map");
    }
}
