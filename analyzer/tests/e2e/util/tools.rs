//! The tool policy: a test that needs a tool (or root) runs with it or fails, naming the
//! Debian package to install; it never skips.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// Fails the test: `what` is missing; Debian's `package` provides it. The one message of
/// the tool policy (see the module comment of `util`).
#[track_caller]
pub fn missing_tool(what: &str, package: &str) -> ! {
    panic!(
        "{what} is not installed, and this test needs it: install Debian's {package} \
         (`apt-get install {package}`; scripts/deps.sh installs every package the tests use). \
         A missing tool fails the test, never skips it."
    )
}

/// The path of `tool`, or a failed test naming Debian's `package` ([`missing_tool`]).
/// `tool` is a command looked up in PATH, or a path (any file: a program or a library).
#[track_caller]
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    find_tool(tool).unwrap_or_else(|| missing_tool(tool, package))
}

/// `tool` as [`require_tool`] finds it, or `None`.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if tool.contains('/') {
        let p = PathBuf::from(tool);
        return p.exists().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Fails the test unless it runs as root (CI does): `why` says what needs root.
#[track_caller]
pub fn require_root(why: &str) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this test needs root ({why}) and runs as uid {euid}: run the e2e tests as root, as \
         CI does. A missing privilege fails the test, never skips it."
    );
}

/// How long one Chromium run may take.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

/// Headless Chromium, for the pages the tests open (the HTML report, valgrind's
/// dh_view.html). Its absence fails the test ([`missing_tool`]): CI installs it, and a
/// test that passed without opening the page would prove nothing.
#[track_caller]
pub fn browser() -> PathBuf {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find_map(find_tool)
        .unwrap_or_else(|| {
            missing_tool("chromium (headless, to open the tests' pages)", "chromium")
        })
}

/// Runs headless Chromium on `page` (with the URL fragment `fragment`) with `args`, in a
/// fresh profile, and returns its output (asserting success).
pub fn chromium(browser: &Path, page: &Path, fragment: &str, args: &[&str]) -> Output {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = super::clean_command(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .arg(format!(
        "file://{}{fragment}",
        page.canonicalize().unwrap().display()
    ));
    let out = super::output_with_timeout(&mut cmd, BROWSER_TIMEOUT);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
