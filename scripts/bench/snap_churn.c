/* snap_churn: threads churning 1 MiB blocks, for the repeated-snapshot benchmark of
 * scripts/bench.py (--snapshots).
 *
 *   snap_churn [--threads T] [--mb N]
 *
 * T threads (default 10) share a heap of N MiB (default 512) of 1 MiB blocks, each
 * thread owning N / T of them. At start every thread allocates its blocks and fills
 * them (memset with 0x5a, which is no address, so every page is written); then the
 * program prints one line,
 *
 *   ready PID threads=T blocks=B
 *
 * and every thread churns as fast as it can: it frees one of its blocks, picked at
 * random, allocates a new 1 MiB block in its place and fills it. The live heap stays
 * at N MiB; each turn is 2 heap events (one free, one malloc). Every block stays
 * reachable (the threads' slot arrays hang off a global), so nothing leaks.
 *
 * Each thread measures the gaps between its consecutive turns (CLOCK_MONOTONIC): a
 * snapshot handler's fork, or a leak checker stopping the world, shows as a long gap.
 * The main thread reads commands from stdin, a line each, answered on stdout:
 *
 *   mark    starts a measurement window. Answer: "marked", once every thread has
 *           seen it (up to 2 s).
 *   stat    the window since the last mark: "stat turns=N secs=S maxgap_us=G", the
 *           turns of all threads, its length, the longest gap of any thread.
 *   lsan K  (built with -fsanitize=leak -DLSAN only) runs K leak checks
 *           (__lsan_do_recoverable_leak_check) one after the other: "lsan n=K secs=S
 *           leaky=L" (L: how many found a leak; 0 expected).
 *   quit    stops the threads, frees every block and exits 0. End of input does the
 *           same.
 *
 * Expected events: 2 per block at start and at the end, 2 per turn in between, a few
 * from pthread_create and stdio; the turns are printed by stat.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef LSAN
int __lsan_do_recoverable_leak_check(void);
#endif

#define BLOCK (1u << 20)
#define MAXT 64

struct worker {
    pthread_t tid;
    int id;
    size_t nblocks;
    void **slots;
    _Atomic uint64_t turns;
    _Atomic uint64_t maxgap_ns;
    _Atomic unsigned gen; /* the mark this thread's figures belong to */
};

struct worker *workers; /* a global: every block stays reachable through it */
static int nthreads = 10;
static atomic_int stop, started;
static _Atomic unsigned mark_gen;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

__attribute__((noipa)) static void *new_block(void) {
    void *p = malloc(BLOCK);
    if (!p) exit(5);
    memset(p, 0x5a, BLOCK);
    return p;
}

static void *work(void *arg) {
    struct worker *w = arg;
    uint64_t s = 88172645463325252ull + (uint64_t)w->id * 7919;
    for (size_t k = 0; k < w->nblocks; k++) w->slots[k] = new_block();
    atomic_fetch_add(&started, 1);
    uint64_t last = now_ns();
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        size_t k = s % w->nblocks;
        free(w->slots[k]);
        w->slots[k] = new_block();
        uint64_t t = now_ns(), gap = t - last;
        last = t;
        unsigned g = atomic_load_explicit(&mark_gen, memory_order_relaxed);
        if (g != atomic_load_explicit(&w->gen, memory_order_relaxed)) {
            atomic_store(&w->maxgap_ns, 0);
            atomic_store(&w->turns, 0);
            atomic_store(&w->gen, g);
            continue; /* the gap straddles the mark */
        }
        atomic_fetch_add_explicit(&w->turns, 1, memory_order_relaxed);
        if (gap > atomic_load_explicit(&w->maxgap_ns, memory_order_relaxed))
            atomic_store_explicit(&w->maxgap_ns, gap, memory_order_relaxed);
    }
    return NULL;
}

int main(int argc, char **argv) {
    size_t mb = 512;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) nthreads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--mb")) mb = strtoul(argv[i + 1], NULL, 10);
    }
    if (nthreads < 1) nthreads = 1;
    if (nthreads > MAXT) nthreads = MAXT;
    if (mb < (size_t)nthreads) mb = nthreads;
    workers = calloc(nthreads, sizeof *workers);
    for (int i = 0; i < nthreads; i++) {
        workers[i].id = i;
        workers[i].nblocks = mb / nthreads;
        workers[i].slots = calloc(workers[i].nblocks, sizeof(void *));
        pthread_create(&workers[i].tid, NULL, work, &workers[i]);
    }
    while (atomic_load(&started) < nthreads) usleep(1000);
    printf("ready %d threads=%d blocks=%zu\n", (int)getpid(), nthreads, (mb / nthreads) * nthreads);
    fflush(stdout);

    char line[128];
    uint64_t mark_t = now_ns();
    while (fgets(line, sizeof line, stdin)) {
        if (!strncmp(line, "mark", 4)) {
            unsigned g = atomic_fetch_add(&mark_gen, 1) + 1;
            /* Answer once every thread has turned since (up to 2 s), so that a stall
             * that follows the answer is not a gap straddling the mark, which a thread
             * drops. */
            for (int i = 0, waited = 0; i < nthreads && waited < 2000; i++)
                while (atomic_load(&workers[i].gen) != g && waited++ < 2000) usleep(1000);
            mark_t = now_ns();
            printf("marked\n");
        } else if (!strncmp(line, "stat", 4)) {
            uint64_t turns = 0, gap = 0;
            unsigned g = atomic_load(&mark_gen);
            for (int i = 0; i < nthreads; i++) {
                if (atomic_load(&workers[i].gen) != g) continue; /* no turn since the mark */
                turns += atomic_load(&workers[i].turns);
                uint64_t m = atomic_load(&workers[i].maxgap_ns);
                if (m > gap) gap = m;
            }
            printf("stat turns=%llu secs=%.3f maxgap_us=%llu\n", (unsigned long long)turns,
                   (now_ns() - mark_t) / 1e9, (unsigned long long)(gap / 1000));
#ifdef LSAN
        } else if (!strncmp(line, "lsan", 4)) {
            int n = atoi(line + 4), leaky = 0;
            uint64_t t0 = now_ns();
            for (int i = 0; i < n; i++) leaky += __lsan_do_recoverable_leak_check() != 0;
            printf("lsan n=%d secs=%.3f leaky=%d\n", n, (now_ns() - t0) / 1e9, leaky);
#endif
        } else if (!strncmp(line, "quit", 4)) {
            break;
        } else {
            printf("unknown command\n");
        }
        fflush(stdout);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < nthreads; i++) {
        pthread_join(workers[i].tid, NULL);
        for (size_t k = 0; k < workers[i].nblocks; k++) free(workers[i].slots[k]);
        free(workers[i].slots);
    }
    free(workers);
    return 0;
}
