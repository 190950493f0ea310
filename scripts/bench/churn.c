/* churn: 10M malloc/free pairs of pseudo-random sizes 16..4096 B through a 3-deep chain
 * of non-inlined functions, sliding window of 1000 live blocks. `churn T` splits the same
 * total work over T threads (each with its own window). */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#ifndef TOTAL
#define TOTAL 10000000L /* the unwinder's e2e test builds a smaller one */
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
    for (long i = 0; i < per_thread; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        int k = (int)(s % WINDOW);
        free(win[k]);
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        win[k] = a1(16 + s % 4081);
    }
    for (int k = 0; k < WINDOW; k++) free(win[k]);
    free(win);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1) threads = 1;
    per_thread = TOTAL / threads;
    if (threads == 1) {
        work(NULL);
        return 0;
    }
    pthread_t t[64];
    for (int i = 0; i < threads && i < 64; i++) pthread_create(&t[i], NULL, work, (void *)(uintptr_t)i);
    for (int i = 0; i < threads && i < 64; i++) pthread_join(t[i], NULL);
    return 0;
}
