// Link libmemtrace.so with immediate binding: lazy PLT resolution inside a
// malloc hook would run the dynamic linker's fixup code on the hot path.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
