/* server_big: a server with a big heap, for scripts/bench-snapshot.py.
 *
 *   server_big [--mb N] [--rate R] [--seed S]
 *
 * At start it builds a heap of N MiB (default 64) of blocks of mixed sizes (70% of
 * 16..256 bytes, 25% of 256..2048, 4.9% of 2..16 KiB, 0.1% of 64..256 KiB; about 1 KiB
 * on average, so 64 MiB is some 67,000 blocks), each filled with a byte pattern that
 * is not an address (every page of the heap is written). Every 10th block is leaked:
 * its only pointer is dropped (leak_block), so it is definitely lost. The others are
 * kept (keep_block) in a global hash table `table` (one calloc'd block of bucket
 * heads, each bucket a singly linked list through the blocks' first word): still
 * reachable, like the table itself. No block points to a leaked one, so nothing is
 * indirectly or possibly lost. It then prints one line:
 *
 *   ready PID leaked_bytes=B leaked_blocks=K kept_bytes=B kept_blocks=K build_s=S
 *
 * (leaked: what a leak checker must report as definitely lost; kept: the table's
 * blocks, the table itself not included) and serves "requests", R per second (spinning
 * between them), or as fast as it can if R is 0 (the default): each one allocates 2 to
 * 4 temporaries (64..4096 bytes), fills and frees them, and replaces the head block of
 * a random bucket by a new block of the same size (free, malloc, link). The live heap
 * and the leak figures stay constant.
 *
 * It measures itself: the time between consecutive turns of its loop
 * (CLOCK_MONOTONIC; a turn serves a request or, when paced, checks the clock). A
 * signal handler that runs (memtrace's snapshot handler, which forks), or a leak
 * search that valgrind runs on the program's thread (vgdb leak_check), shows as a
 * long gap. The gap in which the process reaped a child is the snapshot handler's
 * (it reaps the intermediate child it forks; see children_usage): it is counted
 * apart. Every millisecond the loop polls stdin for commands, a line each, answered
 * on stdout (write(2), no stdio buffers):
 *
 *   mark   starts a measurement window. Answer: "marked".
 *   stat   the window since the last mark. Answer: "stat served=N secs=S
 *          maxgap_us=G at_ms=T long=L reaped=K reapgap_us=H minflt=F": requests
 *          served, its length, the longest gap and when it ended (since the mark),
 *          the gaps over 1 ms, the gaps in which a child was reaped and the longest
 *          of them, and the process's minor page faults (after a fork, each first
 *          write to a page copies it: copy-on-write).
 *   rate R serves R requests per second from now on (0: as fast as it can).
 *          Answer: "rate R".
 *   fork   times a plain fork of the process (a raw clone, so no fork handler runs;
 *          the child exits at once): the kernel's cost of copying its page tables.
 *          Answer: "fork clone_us=C wait_us=W" (W: until the child is reaped, which
 *          includes the child's exit, i.e. its page tables' teardown). Neither this
 *          command's time nor its child count in the window.
 *   pause  stops serving until the next line arrives (to inspect the process: a
 *          valgrind leak search is then followed by `block_list` or
 *          `who_points_at`, which need a heap unchanged since). Answers: "paused",
 *          then "resumed".
 *   quit   exits 0 without freeing anything. End of input does the same.
 *
 * The stack is scrubbed after the build, so no stale pointer to a leaked block stays
 * in a dead stack slot.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SITE __attribute__((noipa))
#define FILL 0x5a /* 0x5a5a5a5a5a5a5a5a is no user-space address */

struct node {
    struct node *next;
    size_t size;
    /* the payload follows, filled with FILL */
};

struct node **table;
size_t nbuckets;
void *volatile sink;
static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A size from the mix described above. */
static size_t pick_size(void)
{
    uint64_t u = rnd() % 1000, r = rnd();
    if (u < 700)
        return 16 + r % 241;
    if (u < 950)
        return 256 + r % 1793;
    if (u < 999)
        return 2048 + r % 14337;
    return 65536 + r % 196609;
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

SITE struct node *new_node(size_t size)
{
    struct node *n = malloc(size);
    if (!n)
        exit(5);
    memset(n, FILL, size);
    n->next = NULL;
    n->size = size;
    return n;
}

SITE void keep_block(size_t size)
{
    struct node *n = new_node(size);
    size_t b = rnd() % nbuckets;
    n->next = table[b];
    table[b] = n;
}

SITE void leak_block(size_t size)
{
    char *p = malloc(size);
    if (!p)
        exit(5);
    memset(p, FILL, size);
    sink = p; /* the block escapes, so the compiler keeps it... */
    sink = NULL; /* ...and its only pointer is dropped */
}

SITE void scrub(void)
{
    volatile char junk[16384];
    memset((char *)junk, 0, sizeof junk);
}

static volatile unsigned long checksum;

/* One request: temporaries, and the replacement of one long-lived block. */
SITE void serve_one(void)
{
    char *tmp[4];
    size_t sz[4];
    int k = 2 + (int)(rnd() % 3);
    unsigned long sum = 0;
    for (int j = 0; j < k; j++) {
        sz[j] = 64 + rnd() % 4033;
        tmp[j] = malloc(sz[j]);
        if (!tmp[j])
            exit(5);
        memset(tmp[j], j + 1, sz[j]);
    }
    for (int j = 0; j < k; j++) {
        sum += (unsigned char)tmp[j][sz[j] / 2];
        free(tmp[j]);
    }
    checksum += sum;
    size_t b = rnd() % nbuckets;
    struct node *old = table[b];
    if (old) {
        size_t size = old->size;
        table[b] = old->next;
        free(old);
        struct node *n = new_node(size);
        n->next = table[b];
        table[b] = n;
    }
}

static void say(const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(1, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            exit(3);
        s += w;
        n -= (size_t)w;
    }
}

/* The current measurement window. */
static uint64_t win_start, win_served, win_maxgap, win_maxgap_at, win_long;
static uint64_t win_reaped, win_reapgap;
static long win_minflt;

/* A sum of the resources used by the children this process reaped: it changes when
 * the process reaps one. memtrace's snapshot handler reaps the intermediate child it
 * forks (which forks the frozen copy, takes a fault or two and exits), so the gap in
 * which this sum changes is the handler's. */
static uint64_t children_usage(void)
{
    struct rusage u;
    getrusage(RUSAGE_CHILDREN, &u);
    return (uint64_t)u.ru_minflt + (uint64_t)u.ru_majflt + (uint64_t)u.ru_nvcsw + (uint64_t)u.ru_nivcsw +
           (uint64_t)u.ru_utime.tv_sec * 1000000 + (uint64_t)u.ru_utime.tv_usec +
           (uint64_t)u.ru_stime.tv_sec * 1000000 + (uint64_t)u.ru_stime.tv_usec;
}

static long own_minflt(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_minflt;
}

static void mark(uint64_t now)
{
    win_start = now;
    win_served = win_maxgap = win_maxgap_at = win_long = win_reaped = win_reapgap = 0;
    win_minflt = own_minflt();
}

/* A plain fork's cost, measured from the parent. */
static void time_fork(char *out, size_t cap)
{
    uint64_t t0 = now_ns();
    long pid = syscall(SYS_clone, (unsigned long)SIGCHLD, 0UL, 0UL, 0UL, 0UL);
    if (pid == 0)
        syscall(SYS_exit_group, 0);
    uint64_t t1 = now_ns();
    if (pid > 0)
        while (waitpid((pid_t)pid, NULL, 0) < 0 && errno == EINTR)
            ;
    uint64_t t2 = now_ns();
    snprintf(out, cap, "fork clone_us=%.0f wait_us=%.0f\n", (t1 - t0) / 1e3, (t2 - t1) / 1e3);
}

/* Requests per second (0: as fast as it can), and when the next one is due. */
static uint64_t period_ns, due;

static void set_rate(unsigned long rate)
{
    period_ns = rate ? 1000000000u / rate : 0;
    due = now_ns();
}

static char inbuf[256];
static size_t inlen;

/* What commands() did (RESET: ran "fork" or "pause", whose time is no gap). */
enum { QUIT, NOTHING, RAN, RESET };

/* Reads what stdin has (without blocking) and runs the complete commands. */
static int commands(void)
{
    struct pollfd p = {.fd = 0, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0)
        return NOTHING; /* nothing, or EINTR */
    ssize_t r = read(0, inbuf + inlen, sizeof inbuf - 1 - inlen);
    if (r < 0)
        return errno == EINTR || errno == EAGAIN ? NOTHING : QUIT;
    if (r == 0)
        return QUIT;
    inlen += (size_t)r;
    int ran = NOTHING;
    char *nl;
    while ((nl = memchr(inbuf, '\n', inlen)) != NULL) {
        char out[200];
        *nl = 0;
        if (ran == NOTHING)
            ran = RAN;
        if (strcmp(inbuf, "quit") == 0)
            return QUIT;
        if (strcmp(inbuf, "mark") == 0) {
            mark(now_ns());
            say("marked\n");
        } else if (strcmp(inbuf, "stat") == 0) {
            double secs = (now_ns() - win_start) / 1e9;
            snprintf(out, sizeof out,
                     "stat served=%lu secs=%.6f maxgap_us=%.1f at_ms=%.1f long=%lu reaped=%lu "
                     "reapgap_us=%.1f minflt=%ld\n",
                     (unsigned long)win_served, secs, win_maxgap / 1e3, win_maxgap_at / 1e6,
                     (unsigned long)win_long, (unsigned long)win_reaped, win_reapgap / 1e3,
                     own_minflt() - win_minflt);
            say(out);
        } else if (strncmp(inbuf, "rate ", 5) == 0) {
            set_rate(strtoul(inbuf + 5, NULL, 10));
            snprintf(out, sizeof out, "rate %lu\n", period_ns ? 1000000000ul / period_ns : 0ul);
            say(out);
        } else if (strcmp(inbuf, "pause") == 0) {
            say("paused\n");
            char c;
            while (read(0, &c, 1) != 0 && c != '\n')
                ;
            say("resumed\n");
            ran = RESET;
        } else if (strcmp(inbuf, "fork") == 0) {
            time_fork(out, sizeof out);
            say(out);
            ran = RESET;
        } else {
            say("unknown command\n");
        }
        size_t used = (size_t)(nl + 1 - inbuf);
        memmove(inbuf, nl + 1, inlen - used);
        inlen -= used;
    }
    if (inlen == sizeof inbuf - 1)
        inlen = 0; /* a line too long: dropped */
    return ran;
}

SITE void build(size_t target, char *out, size_t cap)
{
    size_t total = 0, leaked_bytes = 0, leaked_blocks = 0, kept_bytes = 0, kept_blocks = 0;
    uint64_t t0 = now_ns();
    nbuckets = target / 1024 + 1;
    table = calloc(nbuckets, sizeof *table);
    if (!table)
        exit(5);
    for (size_t i = 0; total < target; i++) {
        size_t size = pick_size();
        if (i % 10 == 9) {
            leak_block(size);
            leaked_bytes += size;
            leaked_blocks++;
        } else {
            keep_block(size);
            kept_bytes += size;
            kept_blocks++;
        }
        total += size;
    }
    snprintf(out, cap, "ready %ld leaked_bytes=%zu leaked_blocks=%zu kept_bytes=%zu kept_blocks=%zu build_s=%.3f\n",
             (long)getpid(), leaked_bytes, leaked_blocks, kept_bytes, kept_blocks, (now_ns() - t0) / 1e9);
}

int main(int argc, char **argv)
{
    size_t mb = 64;
    unsigned long rate = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mb") == 0 && i + 1 < argc)
            mb = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc)
            rate = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            rng = strtoull(argv[++i], NULL, 10) | 1;
        else {
            fprintf(stderr, "usage: server_big [--mb N] [--rate R] [--seed S]\n");
            return 2;
        }
    }
    char ready[200];
    build(mb << 20, ready, sizeof ready);
    scrub();
    say(ready);

    set_rate(rate);
    uint64_t prev = now_ns(), last_poll = prev, reaped = children_usage();
    mark(prev);
    for (;;) {
        uint64_t now = now_ns();
        if (period_ns == 0 || now >= due) {
            serve_one();
            win_served++;
            due += period_ns;
            if (now > due + 100000000)
                due = now; /* more than 100 ms behind: no burst to catch up */
            now = now_ns();
        }
        uint64_t gap = now - prev;
        prev = now;
        if (gap > win_maxgap) {
            win_maxgap = gap;
            win_maxgap_at = now - win_start;
        }
        if (gap > 1000000)
            win_long++;
        if (gap > 50000) {
            uint64_t r = children_usage();
            if (r != reaped) {
                reaped = r;
                win_reaped++;
                if (gap > win_reapgap)
                    win_reapgap = gap;
            }
        }
        if (now - last_poll >= 1000000) {
            last_poll = now;
            int c = commands();
            if (c == QUIT)
                break;
            if (c == RESET) {
                prev = now_ns(); /* the "fork" command's own time is no gap, */
                reaped = children_usage(); /* nor its child a snapshot's */
            }
        }
    }
    return 0;
}
