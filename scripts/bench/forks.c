/* forks.c: what a fork costs a program that has interned many stacks.
 *
 * Allocates (and frees) one block from each of 2^D distinct call stacks (D =
 * argv[2], default 17: 131072 stacks; a path of D two-way choices between a()
 * and b()), so that memtrace's stack table is large, then forks N children
 * (argv[1], default 200) that _exit(0) at once, waiting for each. Prints the mean time of one fork + wait
 * in microseconds on stdout ("fork_wait_us <value>"). scripts/bench-fork.py
 * runs it bare and under the preload, side by side.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEPTH 17

static void *a(int d, unsigned k);
static void *b(int d, unsigned k);

__attribute__((noinline)) static void *a(int d, unsigned k) {
    void *p = d == 0 ? malloc(16) : (k & 1) ? a(d - 1, k >> 1) : b(d - 1, k >> 1);
    __asm__ volatile("" ::: "memory"); /* no tail call: a frame each */
    return p;
}

__attribute__((noinline)) static void *b(int d, unsigned k) {
    void *p = d == 0 ? malloc(16) : (k & 1) ? b(d - 1, k >> 1) : a(d - 1, k >> 1);
    __asm__ volatile("" ::: "memory");
    return p;
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 200;
    int depth = argc > 2 ? atoi(argv[2]) : DEPTH;
    if (depth < 0 || depth > 24)
        return 2;
    for (unsigned k = 0; k < (1u << depth); k++)
        free(a(depth, k));
    double t0 = now_us();
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0)
            _exit(0);
        if (p < 0 || waitpid(p, NULL, 0) != p)
            return 1;
    }
    printf("fork_wait_us %.1f\n", (now_us() - t0) / n);
    return 0;
}
