//! Shared by the fuzz targets: run the analyzer's whole pipeline and both renderers.

pub fn run(bytes: &[u8]) {
    let opts = memtrace::Options::default();
    if let Ok(report) = memtrace::analyze_bytes(bytes, &opts) {
        memtrace::render::text::render(&report, &mut std::io::sink()).expect("sink");
        memtrace::render::json::render(&report, &mut std::io::sink()).expect("sink");
    }
}
