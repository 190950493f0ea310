/* churn_imm: churn where 15 of 16 blocks are freed right after they are allocated.
 * 4,000,000 allocations of pseudo-random sizes 16..4096 B, each through the same
 * 3-deep chain of non-inlined functions as churn.c; 15 of every 16 are freed at once,
 * the 16th goes into a sliding window of 1000 live blocks (the one it replaces is
 * freed). `churn_imm T` splits the same total over T threads, each with its own window.
 *
 * Expected events: 8,000,000 heap events (4,000,000 malloc + 4,000,000 free), plus per
 * thread the window's calloc and free (2) and, with threads, what pthread_create and the
 * threads' exit allocate and free: 8,000,002 on 1 thread, 8,000,016 on 4 (measured with
 * -DTOTAL=16000L: 16,001 and 16,008 allocations, as many frees). Build with -DTOTAL=N
 * for N allocations (2N events and those few). */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#ifndef TOTAL
#define TOTAL 4000000L
#endif
#define WINDOW 1000

/* The empty asm after each call keeps the calls from becoming tail jumps, so the
 * three frames really are on the stack. */
__attribute__((noinline)) void *a3(size_t n) { void *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }
__attribute__((noinline)) void *a2(size_t n) { void *p = a3(n); __asm__ volatile("" ::: "memory"); return p; }
__attribute__((noinline)) void *a1(size_t n) { void *p = a2(n); __asm__ volatile("" ::: "memory"); return p; }

static long per_thread;

static void *work(void *arg) {
    uint64_t s = 88172645463325252ull + (uintptr_t)arg;
    void **win = calloc(WINDOW, sizeof *win);
    int next = 0;
    for (long i = 0; i < per_thread; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        void *p = a1(16 + s % 4081);
        if ((i & 15) != 15) {
            free(p); /* freed right after allocation */
            continue;
        }
        free(win[next]);
        win[next] = p;
        next = (next + 1) % WINDOW;
    }
    for (int k = 0; k < WINDOW; k++) free(win[k]);
    free(win);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    per_thread = TOTAL / threads;
    if (threads == 1) {
        work(NULL);
        return 0;
    }
    pthread_t t[64];
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, work, (void *)(uintptr_t)i);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    return 0;
}
