/* Unit tests for server/filecache.c: hits only while the file is unchanged, LRU, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "filecache.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct fx {
    char dir[64];
    char path[3][96];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/arca-fc-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    for (int i = 0; i < 3; i++)
        snprintf(f->path[i], sizeof(f->path[i]), "%s/f%d", f->dir, i);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 3; i++)
        unlink(f->path[i]);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void key_of(uint8_t key[32], int n)
{
    memset(key, 0, 32);
    key[0] = (uint8_t)n;
    key[31] = 0xA5;
}

/* A wall clock well past any ctime the test files have. */
static uint64_t later_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + FILE_CACHE_SETTLE_NS;
}

/* Writes path and caches its content under key n. */
static void put_file(struct file_cache *fc, const char *path, int n, const char *text)
{
    uint8_t key[32];
    struct stat st;
    key_of(key, n);
    write_file(path, text, strlen(text));
    assert_int_equal(stat(path, &st), 0);
    assert_true(file_cache_put(fc, key, &st, text, strlen(text), later_ns()));
}

static void test_hit_while_unchanged(void **state)
{
    struct fx *f = *state;
    struct file_cache *fc = file_cache_new(1 << 20);
    uint8_t key[32];
    size_t len = 0;
    key_of(key, 1);
    assert_null(file_cache_get(fc, key, f->path[0], &len)); /* empty */
    put_file(fc, f->path[0], 1, "hello");
    const char *got = file_cache_get(fc, key, f->path[0], &len);
    assert_non_null(got);
    assert_int_equal(len, 5);
    assert_memory_equal(got, "hello", 5);
    /* Another key, the same path: not cached. */
    uint8_t other[32];
    key_of(other, 2);
    assert_null(file_cache_get(fc, other, f->path[0], &len));
    struct file_cache_stats st;
    file_cache_stats(fc, &st);
    assert_int_equal(st.entries, 1);
    file_cache_free(fc);
}

static void test_stale_when_file_changes(void **state)
{
    struct fx *f = *state;
    struct file_cache *fc = file_cache_new(1 << 20);
    uint8_t key[32];
    size_t len;
    key_of(key, 1);

    /* Rewritten in place (same size): ctime moves on. */
    put_file(fc, f->path[0], 1, "hello");
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL);
    write_file(f->path[0], "jello", 5);
    assert_null(file_cache_get(fc, key, f->path[0], &len));
    assert_null(file_cache_get(fc, key, f->path[0], &len)); /* dropped, not just skipped */

    /* Removed. */
    put_file(fc, f->path[0], 1, "hello");
    unlink(f->path[0]);
    assert_null(file_cache_get(fc, key, f->path[0], &len));

    /* Replaced by another file (another inode) with the same size and times. */
    put_file(fc, f->path[0], 1, "hello");
    struct stat st;
    assert_int_equal(stat(f->path[0], &st), 0);
    write_file(f->path[1], "hellp", 5);
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    assert_int_equal(utimensat(AT_FDCWD, f->path[1], times, 0), 0);
    assert_int_equal(rename(f->path[1], f->path[0]), 0);
    assert_null(file_cache_get(fc, key, f->path[0], &len));

    /* Truncated. */
    put_file(fc, f->path[0], 1, "hello");
    assert_int_equal(truncate(f->path[0], 4), 0);
    assert_null(file_cache_get(fc, key, f->path[0], &len));

    struct file_cache_stats s;
    file_cache_stats(fc, &s);
    assert_int_equal(s.entries, 0);
    assert_int_equal(s.bytes, 0);
    file_cache_free(fc);
}

static void test_refused(void **state)
{
    struct fx *f = *state;
    struct file_cache *fc = file_cache_new(1 << 20);
    uint8_t key[32];
    struct stat st;
    key_of(key, 1);
    static char big[FILE_CACHE_ENTRY_MAX + 1];
    write_file(f->path[0], big, sizeof(big));
    assert_int_equal(stat(f->path[0], &st), 0);
    assert_false(file_cache_put(fc, key, &st, big, sizeof(big), later_ns())); /* too big */
    write_file(f->path[0], "abc", 3);
    assert_int_equal(stat(f->path[0], &st), 0);
    /* Just written: its ctime has not settled. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
    assert_false(file_cache_put(fc, key, &st, "abc", 3, now_ns));
    /* Bytes that are not the whole file. */
    assert_false(file_cache_put(fc, key, &st, "ab", 2, later_ns()));
    assert_true(file_cache_put(fc, key, &st, "abc", 3, later_ns()));
    /* A budget of 0 is no cache; every call copes with NULL. */
    assert_null(file_cache_new(0));
    size_t len;
    assert_null(file_cache_get(NULL, key, f->path[0], &len));
    assert_false(file_cache_put(NULL, key, &st, "abc", 3, later_ns()));
    file_cache_free(NULL);
    file_cache_free(fc);
}

static void test_lru_within_budget(void **state)
{
    struct fx *f = *state;
    /* Room for two 1000-byte entries (plus their headers), not three. */
    struct file_cache *fc = file_cache_new(2 * (1000 + 256));
    char text[3][1001];
    for (int i = 0; i < 3; i++) {
        memset(text[i], 'a' + i, 1000);
        text[i][1000] = '\0';
    }
    uint8_t k0[32], k1[32], k2[32];
    size_t len;
    key_of(k0, 0);
    key_of(k1, 1);
    key_of(k2, 2);
    put_file(fc, f->path[0], 0, text[0]);
    put_file(fc, f->path[1], 1, text[1]);
    assert_non_null(file_cache_get(fc, k0, f->path[0], &len)); /* 0 is now the newest */
    put_file(fc, f->path[2], 2, text[2]);                      /* evicts 1, the oldest */
    assert_null(file_cache_get(fc, k1, f->path[1], &len));
    assert_non_null(file_cache_get(fc, k0, f->path[0], &len));
    const char *got = file_cache_get(fc, k2, f->path[2], &len);
    assert_non_null(got);
    assert_memory_equal(got, text[2], 1000);
    struct file_cache_stats s;
    file_cache_stats(fc, &s);
    assert_int_equal(s.entries, 2);
    assert_true(s.bytes <= 2 * (1000 + 256));
    /* Putting a key again replaces its entry. */
    put_file(fc, f->path[2], 2, "short");
    got = file_cache_get(fc, k2, f->path[2], &len);
    assert_non_null(got);
    assert_int_equal(len, 5);
    file_cache_stats(fc, &s);
    assert_int_equal(s.entries, 2);
    file_cache_free(fc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hit_while_unchanged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_when_file_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru_within_budget, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
