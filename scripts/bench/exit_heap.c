/* exit_heap.c: a heap of MiB megabytes at exit (argv[1], default 1), for the exit-time
 * scan's cost (scripts/bench-exit-scan.py). Blocks of 64 B to 16 KiB (mixed, from a fixed
 * generator), linked in lists from a global table of 1,024 heads; one block in ten is
 * dropped from its list (definitely lost, with what it points to indirectly lost). It
 * prints nothing and exits 0 by exit().
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct node { struct node *next; };
static struct node *heads[1024];

int main(int argc, char **argv)
{
    long mb = argc > 1 ? atol(argv[1]) : 1;
    uint64_t x = 88172645463325252ull, total = 0, limit = (uint64_t)mb << 20;
    for (unsigned i = 0; total < limit; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t size = 64 + (x % (16 << 10));
        struct node *n = malloc(size);
        memset(n, 0, size < 256 ? size : 256);
        if (i % 10 == 9) {
            n->next = NULL; /* lost */
        } else {
            n->next = heads[i % 1024];
            heads[i % 1024] = n;
        }
        total += size;
    }
    exit(0);
}
