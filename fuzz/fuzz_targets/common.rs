//! Shared by the fuzz targets: run the analyzer's whole pipeline and both renderers.

pub fn run(bytes: &[u8]) {
    let opts = memtrace_analyzer::Options::default();
    if let Ok(report) = memtrace_analyzer::analyze_bytes(bytes, &opts) {
        memtrace_analyzer::render::text::render(&report, &mut std::io::sink()).expect("sink");
        memtrace_analyzer::render::json::render(&report, &mut std::io::sink()).expect("sink");
    }
}
