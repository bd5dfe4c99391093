//! Build script shared by the crates whose binaries link DuckDB: it tells the dynamic loader to
//! look for `libduckdb.so` beside the binary (how release images ship it) and, in development,
//! in `DUCKDB_LIB_DIR` (where `./dev.sh` put it), so no `LD_LIBRARY_PATH` is needed.

fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
