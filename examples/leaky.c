/* A small demo program for `scripts/demo.sh`: it leaks 3 blocks (1 x 1000 bytes
 * from make_buffer, 2 x 64 bytes from remember) and maps 4 pages it never unmaps. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>

static void *volatile sink;

__attribute__((noinline)) char *make_buffer(size_t n) { return calloc(1, n); }
__attribute__((noinline)) void remember(const char *s) { char *p = malloc(64); strncpy(p, s, 63); sink = p; }

int main(void) {
    char *keep = make_buffer(1000);
    sink = keep;
    for (int i = 0; i < 100; i++) {
        char *tmp = make_buffer(4096);
        free(tmp);
    }
    remember("first");
    remember("second");
    sink = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    puts("demo done");
    return 0;
}
