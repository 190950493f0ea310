// Link libmemtrace.so with immediate binding: lazy PLT resolution inside a
// malloc hook would run the dynamic linker's fixup code on the hot path.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // Run our constructor before every other object's (DF_1_INITFIRST), so
    // that allocations made by other libraries' constructors (libstdc++'s
    // emergency exception pool, say) are recorded too.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,initfirst");
}
