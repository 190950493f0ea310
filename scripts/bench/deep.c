/* deep: 1M allocations, each made at the leaf of its own 200-frame recursion (and freed
 * there), so every stack is 200+ frames deep. */
#include <stdlib.h>

void *volatile sink;

__attribute__((noinline)) void leaf(int i) {
    void *p = malloc(64 + (i & 255));
    sink = p;
    free(p);
}

__attribute__((noinline)) void recurse(int depth, int i) {
    if (depth == 0) {
        leaf(i);
        return;
    }
    recurse(depth - 1, i);
    __asm__ volatile("" ::: "memory"); /* not a tail call */
}

#ifndef COUNT
#define COUNT 1000000 /* the unwinder's e2e test builds a smaller one */
#endif

int main(void) {
    for (int i = 0; i < COUNT; i++) recurse(200, i);
    return 0;
}
