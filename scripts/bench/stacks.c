/* stacks: 2^20 = 1,048,576 allocations, each from a call path of its own, for timing
 * `memtrace report` on a log with 1M distinct stacks.
 *
 * Allocation i goes down a chain of DEPTH (20) calls; the k-th call goes to step0 or
 * step1 as bit k of i says, and the last one calls leaf, which mallocs 32 bytes and
 * frees them. Each call site is its own return address (step0 and step1 are distinct
 * noipa functions, so neither identical-code folding nor inlining merges them), so the
 * sequence of return addresses spells i's bits: 2^DEPTH distinct stacks of DEPTH + 2
 * frames of this program (main, the steps, leaf), on top of libc's start frames.
 *
 * Expected events: 2,097,152 heap events (1,048,576 malloc + 1,048,576 free of 32 B),
 * over 1,048,576 distinct allocation stacks; nothing leaks. -DDEPTH=N for 2^N stacks. */
#include <stdlib.h>

#ifndef DEPTH
#define DEPTH 20
#endif
#define NOIPA __attribute__((noipa))

void *volatile sink;

NOIPA void leaf(void) {
    void *p = malloc(32);
    sink = p;
    free(p);
}

NOIPA void step1(int d, unsigned i);

NOIPA void step0(int d, unsigned i) {
    if (d == DEPTH)
        leaf();
    else if ((i >> d) & 1)
        step1(d + 1, i);
    else
        step0(d + 1, i);
    __asm__ volatile("" ::: "memory"); /* not a tail call */
}

NOIPA void step1(int d, unsigned i) {
    if (d == DEPTH)
        leaf();
    else if ((i >> d) & 1)
        step1(d + 1, i);
    else
        step0(d + 1, i);
    __asm__ volatile("" ::: "memory"); /* not a tail call */
    sink = 0; /* and not the same code as step0 */
}

int main(void) {
    for (unsigned i = 0; i < (1u << DEPTH); i++) {
        if (i & 1)
            step1(1, i);
        else
            step0(1, i);
    }
    return 0;
}
