//! Debian's command-line tools: sqlite3, git, gcc, ar and a bash pipeline.

use super::*;

const SQL: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v INTEGER);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 5000)
  INSERT INTO t(k, v) SELECT printf('key%05d', (i * 7919) % 5000), i * i FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_v ON t(v);
SELECT count(*), sum(v) FROM t WHERE k BETWEEN 'key01000' AND 'key02000';
SELECT k, v FROM t WHERE k LIKE 'key0012%' ORDER BY k;
SELECT count(DISTINCT k) FROM t;
PRAGMA integrity_check;";

// sqlite3 builds a 5000-row table with two indexes in a database file, queries it through
// the index and checks its integrity: ~21,000 allocations, all freed, equal to valgrind's.
#[test]
fn sqlite3_indexed_table_matches_valgrind() {
    let sqlite3 = require_tool("/usr/bin/sqlite3", "sqlite3");
    let s = Scratch::new(&[], |_| {}).compared_with_valgrind();
    let cmd = argv![sqlite3, "t.db", SQL];
    let runs = s.bare_then_traced(std::slice::from_ref(&cmd));
    assert_success("sqlite3", &runs[0]);
    let out = String::from_utf8_lossy(&runs[0].output.stdout).into_owned();
    assert!(
        out.starts_with("1001|") && out.ends_with("5000\nok\n"),
        "sqlite3 printed {out:?}"
    );
    let r = s.only_report(runs[0].pid, "sqlite3");
    assert_exited_with_allocations(&r, 10_000);
    r.assert_heap_leaked(0, 0);
    let v = s.valgrind(&cmd, true);
    assert_matches_valgrind("sqlite3", &r, &v);
}

// git init, add, two commits and log on a scratch repository, with fixed names and dates
// (so the commit ids are the same in both runs). `git commit` runs `git maintenance run
// --auto` as a child (fork + exec): those logs must be sane too. `git log` is compared
// with valgrind, on the repository the traced run made.
#[test]
fn git_init_commit_log() {
    let git = require_tool("/usr/bin/git", "git");
    let date = "2020-01-01T00:00:00Z";
    let s = Scratch::new(
        &[
            ("GIT_AUTHOR_NAME", "A U Thor"),
            ("GIT_AUTHOR_EMAIL", "author@example.com"),
            ("GIT_COMMITTER_NAME", "C O Mitter"),
            ("GIT_COMMITTER_EMAIL", "committer@example.com"),
            ("GIT_AUTHOR_DATE", date),
            ("GIT_COMMITTER_DATE", date),
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("GIT_CONFIG_GLOBAL", "/dev/null"),
        ],
        |w| {
            for i in 1..=3 {
                let text: String = (1..=i * 1000).map(|n| format!("{n}\n")).collect();
                std::fs::write(w.join(format!("f{i}.txt")), text).expect("write a file");
            }
        },
    )
    .compared_with_valgrind();
    let log = argv![&git, "log", "--stat"];
    let steps = [
        argv![&git, "init", "-q", "-b", "main", "."],
        argv![&git, "add", "."],
        argv![&git, "commit", "-q", "-m", "first"],
        argv![&git, "rm", "-q", "f2.txt"],
        argv![&git, "commit", "-q", "-m", "second"],
        log.clone(),
    ];
    let runs = s.bare_then_traced(&steps);
    for (step, run) in steps.iter().zip(&runs) {
        assert_success(&format!("{step:?}"), run);
    }
    let out = String::from_utf8_lossy(&runs[5].output.stdout).into_owned();
    assert!(
        out.lines().filter(|l| l.starts_with("commit ")).count() == 2
            && out.contains("f3.txt | 3000 +"),
        "git log printed {out}"
    );
    let reports = s.reports();
    for (step, run) in steps.iter().zip(&runs) {
        let r = of_pid(&reports, run.pid);
        assert!(
            r.process("cmdline").as_array().map(Vec::len) == Some(step.len()),
            "{step:?}: the log of pid {} is the step's: {}",
            run.pid,
            r.v["process"]
        );
        assert_exited_with_allocations(r, 50);
    }
    let r = of_pid(&reports, runs[5].pid);
    let v = s.valgrind(&log, false);
    assert_matches_valgrind("git log --stat", r, &v);
}

// gcc compiles and links a C file: a tree of processes (gcc -> cc1, as, collect2 -> ld),
// each traced into a log of its own. The program built is byte-identical to the bare
// run's, and runs.
#[test]
fn gcc_compiles_and_links() {
    let gcc = require_tool("/usr/bin/gcc", "gcc");
    let s = Scratch::new(&[], |w| {
        std::fs::copy(script("gcc_input.c"), w.join("hello.c")).expect("copy the C file");
    });
    let cmd = argv![gcc, "-O2", "-Wall", "-o", "hello", "hello.c"];
    s.reset();
    let bare = s.run(Mode::Bare, &cmd);
    let bare_binary = std::fs::read(s.work().join("hello")).expect("the bare run built hello");
    s.reset();
    let traced = s.run(Mode::Traced, &cmd);
    assert_same_output(&cmd, &bare.output, &traced.output);
    assert_success("gcc", &traced);
    assert!(
        String::from_utf8_lossy(&traced.output.stderr).contains("-Wunused-variable"),
        "gcc's warning: {}",
        String::from_utf8_lossy(&traced.output.stderr)
    );
    let traced_binary = std::fs::read(s.work().join("hello")).expect("the traced run built hello");
    assert!(
        bare_binary == traced_binary,
        "gcc built a different program under the preload"
    );
    let hello = Command::new(s.work().join("hello"))
        .output()
        .expect("run the built program");
    assert_eq!(
        String::from_utf8_lossy(&hello.stdout),
        "item0=0\nitem3=1\nitem1=2\nitem4=3\nitem2=4\n"
    );

    let reports = s.reports();
    let find = |pred: &dyn Fn(&str) -> bool, what: &str| -> &Report {
        let v: Vec<&Report> = reports.iter().filter(|r| pred(&exe_name(r))).collect();
        assert_eq!(
            v.len(),
            1,
            "exactly one log of {what}; logs of {:?}",
            reports.iter().map(exe_name).collect::<Vec<_>>()
        );
        v[0]
    };
    let driver = of_pid(&reports, traced.pid);
    let cc1 = find(&|n| n == "cc1", "cc1");
    let asm = find(&|n| n == "as" || n.ends_with("-as"), "as");
    let collect2 = find(&|n| n == "collect2", "collect2");
    let ld = find(&|n| n.starts_with("ld") || n.contains("-ld"), "ld");
    let pid = |r: &Report| r.process("pid").as_u64().expect("pid");
    let ppid = |r: &Report| r.process("ppid").as_u64().expect("ppid");
    for (name, r) in [("cc1", cc1), ("as", asm), ("collect2", collect2)] {
        assert_eq!(ppid(r), pid(driver), "{name} is a child of the gcc driver");
    }
    assert_eq!(ppid(ld), pid(collect2), "ld is a child of collect2");
    assert_exited_with_allocations(driver, 50);
    assert_exited_with_allocations(cc1, 1000);
    assert_exited_with_allocations(asm, 50);
    assert_exited_with_allocations(collect2, 20);
    assert_exited_with_allocations(ld, 500);
}

// A bash pipeline: bash forks a child per command, each child execs its program (seq,
// sort, awk, sort, tail): every process writes its log(s), all sane.
#[test]
fn bash_pipeline() {
    let bash = require_tool("/usr/bin/bash", "bash");
    let s = Scratch::new(&[], |_| {});
    let script = "seq 1 30000 | sort -rn | awk '{ s += $1 } NR % 5000 == 0 { print NR, s }' \
                  | sort -n | tail -n 3; echo \"status ${PIPESTATUS[*]}\"";
    let runs = s.bare_then_traced(&[argv![bash, "-c", script]]);
    assert_success("bash", &runs[0]);
    assert_eq!(
        String::from_utf8_lossy(&runs[0].output.stdout),
        "20000 400010000\n25000 437512500\n30000 450015000\nstatus 0 0 0 0 0\n"
    );
    let reports = s.reports();
    let names: Vec<String> = reports.iter().map(exe_name).collect();
    for want in ["seq", "tail"] {
        assert!(
            names.iter().any(|n| n == want),
            "a log of {want}: {names:?}"
        );
    }
    assert!(
        names.iter().filter(|n| *n == "sort").count() == 2,
        "two logs of sort: {names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with("awk")),
        "a log of awk: {names:?}"
    );
    // Every forked child ended by exec; every program image ended by exit.
    let forked: Vec<&Report> = reports
        .iter()
        .filter(|r| !no_fork(r.process("forked_from")))
        .collect();
    assert!(
        forked.len() >= 5,
        "bash forked a child per command: {names:?}"
    );
    for r in &forked {
        r.assert_ended("exec");
    }
    for r in reports.iter().filter(|r| no_fork(r.process("forked_from"))) {
        r.assert_ended("exit");
    }
    assert_exited_with_allocations(of_pid(&reports, runs[0].pid), 100);
}

// GNU ar loads binutils' LLVM plugin (LLVMgold, from llvm-14-linker-tools), which brings
// libstdc++ and libz3 into a C program by dlopen(RTLD_LOCAL): libz3's constructors bind
// `operator new` to memtrace's, whose next definition `dlsym(RTLD_NEXT)` cannot see. That
// crashed ar (a jump to address 0), and a failed global lookup of libstdc++'s
// `__gnu_cxx::__freeres` inside a hook entered hooks within hooks (16 of them), which
// wrapped the hook depth below zero in the release build (a panic). The archive must come
// out byte-identical to the bare run's, no hook nests (`assert_sane`), and libstdc++'s
// 72,704-byte emergency pool, allocated by its constructor, is released at exit by its
// `__freeres`, found in the plugin's scope, as valgrind releases it.
#[test]
fn ar_with_the_llvm_plugin() {
    let ar = require_tool("/usr/bin/ar", "binutils");
    require_tool(
        "/usr/lib/bfd-plugins/LLVMgold-14.so",
        "llvm-14-linker-tools",
    );
    let gcc = require_tool("/usr/bin/gcc", "gcc");
    let s = Scratch::new(&[], move |w| {
        std::fs::write(w.join("u.c"), "int f(void) { return 1; }\n").expect("write u.c");
        let ok = Command::new(&gcc)
            .args(["-c", "u.c", "-o", "u.o"])
            .current_dir(w)
            .status()
            .expect("run gcc");
        assert!(ok.success(), "gcc -c u.c");
    });
    let cmd = argv![ar, "rcs", "t.a", "u.o"];
    s.reset();
    let bare = s.run(Mode::Bare, &cmd);
    assert_success("ar", &bare);
    let bare_archive = std::fs::read(s.work().join("t.a")).expect("the bare run made t.a");
    s.reset();
    let traced = s.run(Mode::Traced, &cmd);
    assert_same_output(&cmd, &bare.output, &traced.output);
    assert_success("ar", &traced);
    let traced_archive = std::fs::read(s.work().join("t.a")).expect("the traced run made t.a");
    assert!(
        bare_archive == traced_archive,
        "ar made a different archive under the preload"
    );
    let r = s.only_report(traced.pid, "ar");
    assert_exited_with_allocations(&r, 1_000);
    let pool = r.v["leaks"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|l| l["bytes"].as_u64() == Some(72_704));
    assert!(
        !pool,
        "libstdc++'s emergency pool is released at exit\n{}",
        r.describe_leaks()
    );
}
