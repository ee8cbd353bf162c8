/* Unit tests for storage/blob.c against real files in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "arca_err.h"
#include "fixture.h"
#include "blob.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1024u * 1024u)

struct fixture {
    char dir[64];
    blob_store *bs;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (fixture_tmpdir(f->dir, sizeof(f->dir), "blob") != 0)
        return -1;
    if (blob_store_open(f->dir, &f->bs) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    blob_store_free(f->bs);
    fixture_rmtree(f->dir);
    free(f);
    return 0;
}

static int count_entries(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static int tmp_count(struct fixture *f)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/tmp", f->dir);
    return count_entries(p);
}

static uint8_t *pattern(size_t len, uint32_t seed)
{
    uint8_t *b = malloc(len ? len : 1);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (uint8_t)x;
    }
    return b;
}

static void digest(const char *md, const void *buf, size_t len, uint8_t *out)
{
    EVP_MD *m = EVP_MD_fetch(NULL, md, NULL);
    assert_non_null(m);
    assert_int_equal(EVP_Digest(buf, len, out, NULL, m, NULL), 1);
    EVP_MD_free(m);
}

/* Writes buf through a writer in chunks given by a cycling size list; md5 gets other chunks. */
static void write_chunked(blob_writer *w, const uint8_t *buf, size_t len, const size_t *sizes,
                          size_t nsizes)
{
    size_t off = 0, i = 0;
    while (off < len) {
        size_t n = sizes[i++ % nsizes];
        if (n > len - off)
            n = len - off;
        assert_int_equal(blob_writer_write(w, buf + off, n), 0);
        off += n;
    }
}

static void md5_in(blob_writer *w, const uint8_t *buf, size_t len, size_t chunk)
{
    for (size_t off = 0; off < len; off += chunk)
        blob_writer_md5(w, buf + off, len - off < chunk ? len - off : chunk);
}

/* The stored blob sha256 holds exactly buf. */
static void assert_file_is(struct fixture *f, const uint8_t sha256[32], const uint8_t *buf,
                           size_t len)
{
    int fd = -1;
    uint64_t size = 0;
    assert_int_equal(blob_open(f->bs, sha256, &fd, &size), 0);
    assert_int_equal(size, len);
    uint8_t *got = malloc(len ? len : 1);
    assert_non_null(got);
    size_t have = 0;
    while (have < len) {
        ssize_t n = pread(fd, got + have, len - have, (off_t)have);
        assert_true(n > 0);
        have += (size_t)n;
    }
    assert_memory_equal(got, buf, len);
    free(got);
    close(fd);
}

/* Stores buf and returns its digests and blocks; checks them against one-shot hashes. */
static void store(struct fixture *f, const uint8_t *buf, size_t len, const size_t *sizes,
                  size_t nsizes, struct blob_digests *dig, struct blob_blocks *blocks)
{
    blob_writer *w = NULL;
    assert_int_equal(blob_writer_new(f->bs, &w), 0);
    write_chunked(w, buf, len, sizes, nsizes);
    md5_in(w, buf, len, 777777);
    assert_int_equal(blob_writer_finish(w, dig), 0);
    blob_writer_take_blocks(w, blocks);
    assert_int_equal(blob_writer_commit(w), 0);
    blob_writer_free(w);

    uint8_t sha256[32], sha1[20], md5[16];
    digest("SHA256", buf, len, sha256);
    digest("SHA1", buf, len, sha1);
    digest("MD5", buf, len, md5);
    assert_memory_equal(dig->sha256, sha256, 32);
    assert_memory_equal(dig->sha1, sha1, 20);
    assert_memory_equal(dig->md5, md5, 16);
    assert_int_equal(dig->size, len);
    assert_file_is(f, dig->sha256, buf, len);
    assert_int_equal(blocks->count, (len + MiB - 1) / MiB);
    for (uint32_t i = 0; i < blocks->count; i++) {
        size_t off = (size_t)i * MiB, n = len - off < MiB ? len - off : MiB;
        assert_true(blocks->sums[i] == blob_block_sum(buf + off, n));
    }
}

static void test_known_vectors(void **state)
{
    struct fixture *f = *state;
    blob_writer *w = NULL;
    struct blob_digests dig;
    struct blob_blocks blocks = {0};
    char hex[65];
    assert_int_equal(blob_writer_new(f->bs, &w), 0);
    assert_int_equal(blob_writer_write(w, "a", 1), 0);
    assert_int_equal(blob_writer_write(w, "bc", 2), 0);
    blob_writer_md5(w, "ab", 2);
    blob_writer_md5(w, "c", 1);
    assert_int_equal(blob_writer_finish(w, &dig), 0);
    blob_writer_take_blocks(w, &blocks);
    hex_encode(dig.sha256, 32, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    hex_encode(dig.sha1, 20, hex);
    assert_string_equal(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    hex_encode(dig.md5, 16, hex);
    assert_string_equal(hex, "900150983cd24fb0d6963f7d28e17f72");
    assert_int_equal(dig.size, 3);
    assert_int_equal(blocks.count, 1);
    assert_true(blocks.sums[0] == blob_block_sum("abc", 3));
    assert_int_equal(blob_writer_commit(w), 0);
    blob_writer_free(w);

    char path[PATH_MAX], want[PATH_MAX];
    assert_int_equal(blob_store_path(f->bs, dig.sha256, path, sizeof(path)), 0);
    snprintf(want, sizeof(want), "%s/ba/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
             f->dir);
    assert_string_equal(path, want);
    assert_int_equal(blob_store_path(f->bs, dig.sha256, path, 20), -ENAMETOOLONG);
    int fd = -1;
    uint64_t size = 0;
    char got[4] = {0};
    assert_int_equal(blob_open(f->bs, dig.sha256, &fd, &size), 0);
    assert_int_equal(size, 3);
    assert_int_equal(read(fd, got, 3), 3);
    assert_string_equal(got, "abc");
    close(fd);
    assert_int_equal(blob_verify(f->bs, &dig, &blocks), 0);
    assert_int_equal(tmp_count(f), 0);
    blob_blocks_cleanup(&blocks);
}

static void test_chunking(void **state)
{
    struct fixture *f = *state;
    size_t len = 3 * MiB + 12345;
    uint8_t *buf = pattern(len, 7);
    static const size_t one_shot[] = {SIZE_MAX};
    static const size_t ones[] = {1};
    static const size_t odd[] = {1, MiB - 1, 3, MiB + 7, 65536, 2 * MiB - 5};
    static const size_t exact[] = {MiB};
    const struct {
        const size_t *s;
        size_t n;
    } plans[] = {{one_shot, 1}, {odd, 6}, {exact, 1}};
    struct blob_digests first;
    for (size_t p = 0; p < sizeof(plans) / sizeof(plans[0]); p++) {
        struct blob_digests dig;
        struct blob_blocks blocks = {0};
        store(f, buf, len, plans[p].s, plans[p].n, &dig, &blocks);
        if (p == 0)
            first = dig;
        assert_memory_equal(dig.sha256, first.sha256, 32);
        assert_memory_equal(dig.sha1, first.sha1, 20);
        assert_memory_equal(dig.md5, first.md5, 16);
        assert_int_equal(dig.size, first.size);
        blob_blocks_cleanup(&blocks);
    }
    /* 1-byte writes across a block boundary (a smaller blob keeps the test quick). */
    size_t small = MiB + 100;
    struct blob_digests dig;
    struct blob_blocks blocks = {0};
    store(f, buf, small, ones, 1, &dig, &blocks);
    assert_int_equal(blocks.count, 2);
    blob_blocks_cleanup(&blocks);
    free(buf);
}

struct md5_job {
    blob_writer *w;
    const uint8_t *buf;
    size_t len;
};

static void *md5_thread(void *arg)
{
    struct md5_job *j = arg;
    md5_in(j->w, j->buf, j->len, 4096);
    return NULL;
}

/* MD5 on a second thread beside write(): the digests still match. */
static void test_md5_concurrent(void **state)
{
    struct fixture *f = *state;
    size_t len = 2 * MiB + 3;
    uint8_t *buf = pattern(len, 11);
    blob_writer *w = NULL;
    struct blob_digests dig;
    uint8_t md5[16];
    pthread_t t;
    assert_int_equal(blob_writer_new(f->bs, &w), 0);
    struct md5_job j = {w, buf, len};
    assert_int_equal(pthread_create(&t, NULL, md5_thread, &j), 0);
    static const size_t sizes[] = {65536};
    write_chunked(w, buf, len, sizes, 1);
    pthread_join(t, NULL);
    assert_int_equal(blob_writer_finish(w, &dig), 0);
    digest("MD5", buf, len, md5);
    assert_memory_equal(dig.md5, md5, 16);
    blob_writer_free(w);
    free(buf);
    assert_int_equal(tmp_count(f), 0);
}

/* The open flags of the fd this process has open on a file under dir/tmp, or -1. */
static long temp_file_flags(struct fixture *f)
{
    char tmp[128], link[300], target[PATH_MAX], info[300], line[128];
    snprintf(tmp, sizeof(tmp), "%s/tmp/", f->dir);
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    long flags = -1;
    struct dirent *de;
    while (flags < 0 && (de = readdir(d)) != NULL) {
        snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strncmp(target, tmp, strlen(tmp)) != 0)
            continue;
        snprintf(info, sizeof(info), "/proc/self/fdinfo/%s", de->d_name);
        FILE *fp = fopen(info, "r");
        assert_non_null(fp);
        while (fgets(line, sizeof(line), fp))
            if (sscanf(line, "flags: %lo", &flags) == 1)
                break;
        fclose(fp);
    }
    closedir(d);
    return flags;
}

/*
 * A new blob goes through the page cache for its first MiB and with O_DIRECT
 * after it; whatever the chunking, the file holds exactly the bytes written.
 */
static void test_direct_writes(void **state)
{
    struct fixture *f = *state;
    const size_t len = 5 * MiB + 4097;
    uint8_t *buf = pattern(len, 21);
    static const size_t odd[] = {4095, 1, MiB + 3, 12345, 3 * MiB};
    blob_writer *w = NULL;
    assert_int_equal(blob_writer_new(f->bs, &w), 0);
    assert_int_equal(blob_writer_write(w, buf, 4095), 0);
    long before = temp_file_flags(f);
    assert_true(before >= 0);
    assert_int_equal(before & O_DIRECT, 0);
    /* Does this file system take O_DIRECT at all (tmpfs before Linux 6.6 does not)? */
    char probe[128];
    snprintf(probe, sizeof(probe), "%s/direct-probe", f->dir);
    int pfd = open(probe, O_WRONLY | O_CREAT | O_DIRECT, 0600);
    bool fs_direct = pfd >= 0;
    if (pfd >= 0)
        close(pfd);
    unlink(probe);
    size_t off = 4095;
    int checked = 0;
    for (size_t i = 1; off < len; i++) {
        size_t n = odd[i % 5] < len - off ? odd[i % 5] : len - off;
        assert_int_equal(blob_writer_write(w, buf + off, n), 0);
        off += n;
        if (off > 2 * MiB && off < len) {
            long during = temp_file_flags(f);
            assert_true(during >= 0);
            assert_int_equal((during & O_DIRECT) != 0, fs_direct);
            checked++;
        }
    }
    assert_true(checked > 0);
    md5_in(w, buf, len, 1 << 20);
    struct blob_digests dig;
    assert_int_equal(blob_writer_finish(w, &dig), 0);
    assert_int_equal(temp_file_flags(f) & O_DIRECT, 0); /* the tail went buffered */
    assert_int_equal(blob_writer_commit(w), 0);
    blob_writer_free(w);
    uint8_t sha[32];
    digest("SHA256", buf, len, sha);
    assert_memory_equal(dig.sha256, sha, 32);
    assert_file_is(f, sha, buf, len);
    /* Sizes around the switch and around one stage: each stored byte-exact. */
    static const size_t sizes[] = {MiB - 1, MiB, MiB + 1, 2 * MiB - 4096, 2 * MiB, 2 * MiB + 4095,
                                   3 * MiB + 1};
    static const size_t chunk[] = {65536 + 13};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        uint8_t *b = pattern(sizes[k], 100 + (uint32_t)k);
        struct blob_digests d;
        struct blob_blocks blocks = {0};
        store(f, b, sizes[k], chunk, 1, &d, &blocks);
        blob_blocks_cleanup(&blocks);
        free(b);
    }
    assert_int_equal(tmp_count(f), 0);
    free(buf);
}

/*
 * A file system without direct I/O (ramfs; as root only, else skipped): the
 * writer stays buffered and the blob is still whole.
 */
static void test_no_direct_io_fs(void **state)
{
    struct fixture *f = *state;
    struct fixture rf = {{0}, NULL};
    char *mnt = rf.dir;
    int n = snprintf(rf.dir, sizeof(rf.dir), "%.50s/ramfs", f->dir);
    assert_true(n > 0 && (size_t)n < sizeof(rf.dir));
    assert_int_equal(mkdir(mnt, 0755), 0);
    if (geteuid() != 0 || mount("ramfs", mnt, "ramfs", 0, NULL) != 0) {
        rmdir(mnt);
        skip();
    }
    assert_int_equal(blob_store_open(rf.dir, &rf.bs), 0);
    const size_t len = 3 * MiB + 5;
    uint8_t *buf = pattern(len, 41);
    blob_writer *w = NULL;
    assert_int_equal(blob_writer_new(rf.bs, &w), 0);
    assert_int_equal(blob_writer_write(w, buf, 2 * MiB + 1), 0);
    assert_int_equal(temp_file_flags(&rf) & O_DIRECT, 0);
    assert_int_equal(blob_writer_write(w, buf + 2 * MiB + 1, len - 2 * MiB - 1), 0);
    md5_in(w, buf, len, MiB);
    struct blob_digests dig;
    assert_int_equal(blob_writer_finish(w, &dig), 0);
    assert_int_equal(blob_writer_commit(w), 0);
    blob_writer_free(w);
    assert_file_is(&rf, dig.sha256, buf, len);
    blob_store_free(rf.bs);
    free(buf);
    assert_int_equal(umount(mnt), 0);
}

struct lane_job {
    blob_writer *w;
    const uint8_t *buf;
    size_t len, chunk;
    int which; /* 0 hash, 1 store, 2 md5 */
    int rc;
};

static void *lane_thread(void *arg)
{
    struct lane_job *j = arg;
    for (size_t off = 0; off < j->len && j->rc == 0; off += j->chunk) {
        size_t n = j->len - off < j->chunk ? j->len - off : j->chunk;
        if (j->which == 0)
            j->rc = blob_writer_hash(j->w, j->buf + off, n);
        else if (j->which == 1)
            j->rc = blob_writer_store(j->w, j->buf + off, n);
        else
            blob_writer_md5(j->w, j->buf + off, n);
    }
    return NULL;
}

/*
 * Hashing, storing and MD5 on three threads at once, each with its own
 * chunking (the server's three upload lanes): digests, block sums and the
 * file are as if written in one go.  Lanes fed different byte counts make
 * finish fail and store nothing.
 */
static void test_three_lanes(void **state)
{
    struct fixture *f = *state;
    const size_t len = 7 * MiB + 333;
    uint8_t *buf = pattern(len, 31);
    blob_writer *w = NULL;
    assert_int_equal(blob_writer_new(f->bs, &w), 0);
    struct lane_job jobs[3] = {{w, buf, len, 65536 + 1, 0, 0},
                               {w, buf, len, 524288, 1, 0},
                               {w, buf, len, 100000, 2, 0}};
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, lane_thread, &jobs[i]), 0);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(jobs[i].rc, 0);
    }
    struct blob_digests dig;
    struct blob_blocks blocks = {0};
    assert_int_equal(blob_writer_finish(w, &dig), 0);
    blob_writer_take_blocks(w, &blocks);
    assert_int_equal(blob_writer_commit(w), 0);
    blob_writer_free(w);
    uint8_t sha256[32], sha1[20], md5[16];
    digest("SHA256", buf, len, sha256);
    digest("SHA1", buf, len, sha1);
    digest("MD5", buf, len, md5);
    assert_memory_equal(dig.sha256, sha256, 32);
    assert_memory_equal(dig.sha1, sha1, 20);
    assert_memory_equal(dig.md5, md5, 16);
    assert_int_equal(dig.size, len);
    assert_int_equal(blocks.count, 8);
    for (uint32_t b = 0; b < blocks.count; b++) {
        size_t off = (size_t)b * MiB, n = off + MiB <= len ? MiB : len - off;
        assert_true(blocks.sums[b] == blob_block_sum(buf + off, n));
    }
    blob_blocks_cleanup(&blocks);
    assert_file_is(f, sha256, buf, len);

    /* One byte stored short of what was hashed: finish refuses, nothing is kept. */
    assert_int_equal(blob_writer_new(f->bs, &w), 0);
    assert_int_equal(blob_writer_hash(w, buf, 2 * MiB), 0);
    assert_int_equal(blob_writer_store(w, buf, 2 * MiB - 1), 0);
    assert_int_equal(blob_writer_finish(w, &dig), -EINVAL);
    blob_writer_free(w);
    assert_int_equal(tmp_count(f), 0);
    free(buf);
}

static void test_dedup(void **state)
{
    struct fixture *f = *state;
    size_t len = 5000;
    uint8_t *buf = pattern(len, 3);
    static const size_t sizes[] = {100};
    struct blob_digests d1, d2;
    struct blob_blocks b1 = {0}, b2 = {0};
    char path[PATH_MAX];
    struct stat st1, st2;
    store(f, buf, len, sizes, 1, &d1, &b1);
    assert_int_equal(blob_store_path(f->bs, d1.sha256, path, sizeof(path)), 0);
    assert_int_equal(stat(path, &st1), 0);
    store(f, buf, len, sizes, 1, &d2, &b2);
    assert_memory_equal(d1.sha256, d2.sha256, 32);
    /* A stored copy that reads back whole is kept: the second upload's file is dropped. */
    assert_int_equal(stat(path, &st2), 0);
    assert_true(st1.st_ino == st2.st_ino);
    char hex[65], shard[PATH_MAX];
    hex_encode(d1.sha256, 32, hex);
    snprintf(shard, sizeof(shard), "%s/%.2s", f->dir, hex);
    assert_int_equal(count_entries(shard), 1);
    assert_int_equal(tmp_count(f), 0);
    assert_int_equal(blob_verify(f->bs, &d1, &b1), 0);
    blob_blocks_cleanup(&b1);
    blob_blocks_cleanup(&b2);
    free(buf);
}

/* A shard directory removed by hand is made again by the next blob that belongs in it. */
static void test_missing_shard_remade(void **state)
{
    struct fixture *f = *state;
    static const size_t sizes[] = {SIZE_MAX};
    uint8_t *buf = pattern(9000, 31);
    struct blob_digests dig;
    struct blob_blocks blocks = {0};
    char path[PATH_MAX], shard[PATH_MAX];
    store(f, buf, 9000, sizes, 1, &dig, &blocks);
    blob_blocks_cleanup(&blocks);
    assert_int_equal(blob_store_path(f->bs, dig.sha256, path, sizeof(path)), 0);
    snprintf(shard, sizeof(shard), "%s", path);
    *strrchr(shard, '/') = '\0';
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(shard), 0);
    store(f, buf, 9000, sizes, 1, &dig, &blocks);
    assert_int_equal(blob_verify(f->bs, &dig, &blocks), 0);
    assert_int_equal(count_entries(shard), 1);
    assert_int_equal(tmp_count(f), 0);
    blob_blocks_cleanup(&blocks);
    free(buf);
}

static void test_abort(void **state)
{
    struct fixture *f = *state;
    blob_writer *w = NULL;
    struct blob_digests dig;
    assert_int_equal(blob_writer_new(f->bs, &w), 0);
    assert_int_equal(blob_writer_write(w, "partial", 7), 0);
    assert_int_equal(tmp_count(f), 1);
    blob_writer_free(w);
    assert_int_equal(tmp_count(f), 0);

    /* Finished but never committed: still removed, and nothing was stored. */
    assert_int_equal(blob_writer_new(f->bs, &w), 0);
    assert_int_equal(blob_writer_write(w, "partial", 7), 0);
    assert_int_equal(blob_writer_finish(w, &dig), 0);
    blob_writer_free(w);
    assert_int_equal(tmp_count(f), 0);
    int fd = -1;
    assert_int_equal(blob_open(f->bs, dig.sha256, &fd, NULL), -ENOENT);
    blob_writer_free(NULL);
}

static void test_startup_cleans_tmp(void **state)
{
    struct fixture *f = *state;
    char p[PATH_MAX];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s/tmp/leftover%d", f->dir, i);
        int fd = open(p, O_CREAT | O_WRONLY, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "x", 1), 1);
        close(fd);
    }
    assert_int_equal(tmp_count(f), 3);
    blob_store_free(f->bs);
    f->bs = NULL;
    assert_int_equal(blob_store_open(f->dir, &f->bs), 0);
    assert_int_equal(tmp_count(f), 0);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* A store that predates the LAYOUT file (blobs at <aa>/<bb>/<hex>) is read and then moved. */
static void test_layout_migration(void **state)
{
    struct fixture *f = *state;
    static const size_t sizes[] = {SIZE_MAX};
    uint8_t *b1 = pattern(3000, 21), *b2 = pattern(70000, 22);
    struct blob_digests d1, d2;
    struct blob_blocks k1 = {0}, k2 = {0};
    char h1[65], sub1[256], flat1[PATH_MAX], nest1[PATH_MAX], flat2[PATH_MAX], p[PATH_MAX];
    store(f, b1, 3000, sizes, 1, &d1, &k1);
    store(f, b2, 70000, sizes, 1, &d2, &k2);
    hex_encode(d1.sha256, 32, h1);
    assert_int_equal(blob_store_path(f->bs, d1.sha256, flat1, sizeof(flat1)), 0);
    assert_int_equal(blob_store_path(f->bs, d2.sha256, flat2, sizeof(flat2)), 0);
    snprintf(p, sizeof(p), "%s/%.2s/%s", f->dir, h1, h1);
    assert_string_equal(flat1, p);
    snprintf(p, sizeof(p), "%s/LAYOUT", f->dir);
    assert_true(exists(p));
    for (unsigned a = 0; a < 256; a++) { /* every shard exists from the first open */
        snprintf(p, sizeof(p), "%s/%02x", f->dir, a);
        assert_true(exists(p));
    }
    blob_store_free(f->bs);
    f->bs = NULL;

    /*
     * Turn it into an old store, as a crash part-way through moving would
     * leave it: blob 1 nested, blob 2 already flat, no LAYOUT, a shard missing
     * (old stores made shards on demand), a stranger's file in a nested folder.
     */
    snprintf(sub1, sizeof(sub1), "%s/%.2s/%.2s", f->dir, h1, h1 + 2);
    snprintf(nest1, sizeof(nest1), "%s/%s", sub1, h1);
    assert_int_equal(mkdir(sub1, 0755), 0);
    assert_int_equal(rename(flat1, nest1), 0);
    snprintf(p, sizeof(p), "%s/LAYOUT", f->dir);
    assert_int_equal(unlink(p), 0);
    const char *gone = h1[0] == '7' ? "8e" : "7e", *other = h1[0] == '5' ? "6e" : "5e";
    snprintf(p, sizeof(p), "%s/%s", f->dir, gone);
    assert_int_equal(rmdir(p), 0);
    char odd_dir[256], odd[PATH_MAX], stray[PATH_MAX];
    snprintf(odd_dir, sizeof(odd_dir), "%s/%s/00", f->dir, other);
    snprintf(stray, sizeof(stray), "%s/%s/ab", f->dir, other); /* a file, not a folder */
    assert_int_equal(fs_write_atomic(stray, "y", 1, 0644), 0);
    assert_int_equal(fs_mkdirs(odd_dir, 0755), 0);
    snprintf(odd, sizeof(odd), "%s/notes.txt", odd_dir);
    assert_int_equal(fs_write_atomic(odd, "x", 1, 0644), 0);

    /* Read-only (arcad verify): finds both where they are, moves nothing. */
    blob_store *ro = NULL;
    char rp[PATH_MAX];
    assert_int_equal(blob_store_open_readonly(f->dir, &ro), 0);
    assert_int_equal(blob_store_path(ro, d1.sha256, rp, sizeof(rp)), 0);
    assert_string_equal(rp, nest1);
    assert_int_equal(blob_verify(ro, &d1, &k1), 0);
    blob_store_free(ro);
    assert_true(exists(nest1));
    assert_false(exists(flat1));

    /* The same for a blob already moved up (a move cut short), read-only and nested. */
    assert_int_equal(blob_store_open_readonly(f->dir, &ro), 0);
    assert_int_equal(blob_verify(ro, &d2, &k2), 0);
    blob_store_free(ro);

    /*
     * A writable open moves blob 1 up and keeps blob 2; the stranger's file keeps
     * its folder, so LAYOUT is not written yet (the next start tries again).
     */
    assert_int_equal(blob_store_open(f->dir, &f->bs), 0);
    assert_true(exists(flat1));
    assert_false(exists(nest1));
    assert_false(exists(sub1));
    assert_true(exists(flat2));
    assert_true(exists(odd));
    assert_true(exists(stray));
    snprintf(p, sizeof(p), "%s/%s", f->dir, gone);
    assert_true(exists(p));
    snprintf(p, sizeof(p), "%s/LAYOUT", f->dir);
    assert_false(exists(p));
    blob_store_free(f->bs);
    assert_int_equal(unlink(odd), 0);
    assert_int_equal(blob_store_open(f->dir, &f->bs), 0);
    assert_true(exists(p));
    assert_false(exists(odd_dir));
    assert_true(exists(stray));
    assert_int_equal(blob_verify(f->bs, &d1, &k1), 0);
    assert_int_equal(blob_verify(f->bs, &d2, &k2), 0);

    /* Read-only now reads the flat layout; a second writable open changes nothing. */
    assert_int_equal(blob_store_open_readonly(f->dir, &ro), 0);
    assert_int_equal(blob_store_path(ro, d1.sha256, rp, sizeof(rp)), 0);
    assert_string_equal(rp, flat1);
    assert_int_equal(blob_verify(ro, &d2, &k2), 0);
    blob_store_free(ro);
    blob_store_free(f->bs);
    assert_int_equal(blob_store_open(f->dir, &f->bs), 0);
    assert_int_equal(blob_verify(f->bs, &d1, &k1), 0);

    /* A blob nested after the move (an older arcad run on the directory) is still read. */
    assert_int_equal(mkdir(sub1, 0755), 0);
    assert_int_equal(rename(flat1, nest1), 0);
    assert_int_equal(blob_verify(f->bs, &d1, &k1), 0);
    blob_store_free(f->bs);

    /*
     * The next writable open moves it up, LAYOUT or not, where the file
     * system counts sub-folders in a folder's link count (btrfs does not).
     */
    struct stat sh;
    snprintf(p, sizeof(p), "%s/%.2s", f->dir, h1);
    assert_int_equal(stat(p, &sh), 0);
    bool counts_subdirs = sh.st_nlink > 2;
    assert_int_equal(blob_store_open(f->dir, &f->bs), 0);
    if (counts_subdirs) {
        assert_true(exists(flat1));
        assert_false(exists(nest1));
        assert_false(exists(sub1));
    }
    assert_int_equal(blob_verify(f->bs, &d1, &k1), 0);
    blob_store_free(f->bs);

    /*
     * A nested name that is a hard link to the flat one (cp -al of a half-moved
     * store): rename() would do nothing and succeed, and the move looped on it
     * forever.  The nested name is dropped and the blob stays readable.
     */
    if (exists(nest1)) /* not moved above (btrfs) */
        assert_int_equal(rename(nest1, flat1), 0);
    if (!exists(sub1))
        assert_int_equal(mkdir(sub1, 0755), 0);
    assert_int_equal(link(flat1, nest1), 0);
    snprintf(p, sizeof(p), "%s/LAYOUT", f->dir);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(blob_store_open(f->dir, &f->bs), 0);
    assert_true(exists(flat1));
    assert_false(exists(nest1));
    assert_false(exists(sub1));
    assert_true(exists(p));
    assert_int_equal(blob_verify(f->bs, &d1, &k1), 0);

    blob_blocks_cleanup(&k1);
    blob_blocks_cleanup(&k2);
    free(b1);
    free(b2);
}

/* A read-only store (arcad verify beside a server) reads blobs and changes nothing. */
static void test_readonly_store(void **state)
{
    struct fixture *f = *state;
    static const size_t sizes[] = {SIZE_MAX};
    struct blob_digests dig;
    struct blob_blocks blocks = {0};
    const uint8_t data[] = "read me";
    store(f, data, sizeof(data), sizes, 1, &dig, &blocks);
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/tmp/in-flight", f->dir);
    int fd = open(p, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);

    blob_store *ro = NULL;
    blob_writer *w = NULL;
    assert_int_equal(blob_store_open_readonly(f->dir, &ro), 0);
    assert_int_equal(tmp_count(f), 1); /* another process's upload is left alone */
    assert_int_equal(blob_verify(ro, &dig, &blocks), 0);
    assert_int_equal(blob_writer_new(ro, &w), -EROFS);
    assert_null(w);
    blob_store_free(ro);
    blob_blocks_cleanup(&blocks);

    snprintf(p, sizeof(p), "%s/missing", f->dir);
    assert_int_equal(blob_store_open_readonly(p, &ro), -ENOENT);
    assert_null(ro);
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    uint8_t b;
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x01;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

static void test_corruption(void **state)
{
    struct fixture *f = *state;
    size_t len = 2 * MiB + MiB / 2;
    uint8_t *buf = pattern(len, 5);
    static const size_t sizes[] = {SIZE_MAX};
    struct blob_digests dig;
    struct blob_blocks blocks = {0};
    char path[PATH_MAX];
    void *scratch = malloc(BLOB_BLOCK_SIZE);
    int fd = -1;
    uint64_t size = 0;
    store(f, buf, len, sizes, 1, &dig, &blocks);
    assert_int_equal(blocks.count, 3);
    assert_int_equal(blob_store_path(f->bs, dig.sha256, path, sizeof(path)), 0);

    assert_int_equal(blob_open(f->bs, dig.sha256, &fd, &size), 0);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(blob_check_block(fd, size, &blocks, i, scratch), 0);
    assert_int_equal(blob_verify(f->bs, &dig, &blocks), 0);

    /* A flipped byte in block 1 is caught by that block and by verify only. */
    flip_byte(path, MiB + 4242);
    assert_int_equal(blob_check_block(fd, size, &blocks, 0, scratch), 0);
    assert_int_equal(blob_check_block(fd, size, &blocks, 1, scratch), ARCA_E_CORRUPT);
    assert_int_equal(blob_check_block(fd, size, &blocks, 2, scratch), 0);
    assert_int_equal(blob_verify(f->bs, &dig, &blocks), ARCA_E_CORRUPT);
    assert_int_equal(blob_verify(f->bs, &dig, NULL), ARCA_E_CORRUPT); /* SHA-256 alone */
    assert_int_equal(blob_scrub(f->bs, &dig, &blocks), ARCA_E_CORRUPT);  /* block sums alone */
    assert_int_equal(blob_scrub(f->bs, &dig, NULL), ARCA_E_CORRUPT);     /* no sums: SHA-256 */
    flip_byte(path, MiB + 4242);
    assert_int_equal(blob_verify(f->bs, &dig, &blocks), 0);
    assert_int_equal(blob_scrub(f->bs, &dig, &blocks), 0);
    assert_int_equal(blob_scrub(f->bs, &dig, NULL), 0);

    /*
     * Storing the same bytes again repairs a copy gone bad: the new, whole
     * copy takes the name (the old one stays readable through an open fd).
     */
    flip_byte(path, 2 * MiB + 7);
    assert_int_equal(blob_scrub(f->bs, &dig, &blocks), ARCA_E_CORRUPT);
    struct blob_digests dig2;
    struct blob_blocks blocks2 = {0};
    store(f, buf, len, sizes, 1, &dig2, &blocks2);
    assert_memory_equal(dig2.sha256, dig.sha256, 32);
    assert_int_equal(blob_verify(f->bs, &dig, &blocks), 0); /* replaced: a new inode */
    assert_int_equal(blob_check_block(fd, size, &blocks, 2, scratch), ARCA_E_CORRUPT);
    assert_int_equal(tmp_count(f), 0);
    blob_blocks_cleanup(&blocks2);
    close(fd);
    assert_int_equal(blob_open(f->bs, dig.sha256, &fd, &size), 0);

    /* Truncation: the last block comes up short. */
    assert_int_equal(truncate(path, (off_t)len - 10), 0);
    assert_int_equal(blob_check_block(fd, size, &blocks, 2, scratch), ARCA_E_CORRUPT);
    assert_int_equal(blob_check_block(fd, size, &blocks, 0, scratch), 0);
    assert_int_equal(blob_verify(f->bs, &dig, &blocks), ARCA_E_CORRUPT);
    /* An index entry out of range or with the wrong block count is corrupt too. */
    assert_int_equal(blob_check_block(fd, size, &blocks, 3, scratch), ARCA_E_CORRUPT);
    close(fd);

    assert_int_equal(unlink(path), 0);
    assert_int_equal(blob_verify(f->bs, &dig, &blocks), -ENOENT);
    blob_blocks_cleanup(&blocks);
    free(scratch);
    free(buf);
}

static void test_empty_blob(void **state)
{
    struct fixture *f = *state;
    blob_writer *w = NULL;
    struct blob_digests dig;
    struct blob_blocks blocks = {0};
    char hex[65];
    assert_int_equal(blob_writer_new(f->bs, &w), 0);
    assert_int_equal(blob_writer_write(w, "", 0), 0);
    assert_int_equal(blob_writer_finish(w, &dig), 0);
    blob_writer_take_blocks(w, &blocks);
    assert_int_equal(blob_writer_commit(w), 0);
    blob_writer_free(w);
    hex_encode(dig.sha256, 32, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_encode(dig.md5, 16, hex);
    assert_string_equal(hex, "d41d8cd98f00b204e9800998ecf8427e");
    assert_int_equal(dig.size, 0);
    assert_int_equal(blocks.count, 0);
    assert_int_equal(blob_verify(f->bs, &dig, &blocks), 0);
    blob_blocks_cleanup(&blocks);
    blob_blocks_cleanup(&blocks); /* idempotent */
}

static void count_partial(void *arg, const uint8_t sha256[32])
{
    struct {
        uint8_t sha[32];
        int n;
    } *seen = arg;
    memcpy(seen->sha, sha256, 32);
    seen->n++;
}

/*
 * A transfer broken anywhere, even mid-block, resumes from its partial file:
 * the digests and block sums equal a writer that saw all bytes in one go.
 */
static void test_resume(void **state)
{
    struct fixture *f = *state;
    const size_t len = 3 * MiB + 12345;
    uint8_t *buf = pattern(len, 77);
    uint8_t sha[32];
    digest("SHA256", buf, len, sha);
    const size_t cuts[] = {0, 1, MiB, MiB + 7, 2 * MiB + 100000};
    for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
        blob_writer *w = NULL;
        uint64_t have = 99;
        assert_int_equal(blob_writer_resume(f->bs, sha, &w, &have), 0);
        assert_int_equal(have, 0);
        assert_int_equal(blob_writer_write(w, buf, cuts[k]), 0);
        blob_writer_free(w); /* broken: the partial file stays */
        char part[256];
        char hex[65];
        hex_encode(sha, 32, hex);
        snprintf(part, sizeof(part), "%s/partial/%s", f->dir, hex);
        struct stat st;
        assert_int_equal(stat(part, &st), 0);
        assert_int_equal((size_t)st.st_size, cuts[k]);

        assert_int_equal(blob_writer_resume(f->bs, sha, &w, &have), 0);
        assert_int_equal(have, cuts[k]);
        assert_int_equal(blob_writer_write(w, buf + have, len - have), 0);
        blob_writer_md5(w, buf + have, len - have);
        struct blob_digests d;
        struct blob_blocks blocks = {0};
        assert_int_equal(blob_writer_finish(w, &d), 0);
        assert_memory_equal(d.sha256, sha, 32);
        uint8_t md5[16];
        digest("MD5", buf, len, md5);
        assert_memory_equal(d.md5, md5, 16);
        assert_int_equal(d.size, len);
        blob_writer_take_blocks(w, &blocks);
        assert_int_equal(blocks.count, 4);
        for (uint32_t b = 0; b < blocks.count; b++) {
            size_t off = (size_t)b * MiB, n = off + MiB <= len ? MiB : len - off;
            assert_true(blocks.sums[b] == blob_block_sum(buf + off, n));
        }
        blob_blocks_cleanup(&blocks);
        if (k + 1 < sizeof(cuts) / sizeof(cuts[0])) {
            /* Not committed and discarded: the next round starts from nothing. */
            blob_writer_discard(w);
            blob_writer_free(w);
            assert_int_equal(stat(part, &st), -1);
            continue;
        }
        assert_int_equal(blob_writer_commit(w), 0);
        blob_writer_free(w);
        assert_int_equal(stat(part, &st), -1);
        int fd = -1;
        uint64_t size = 0;
        assert_int_equal(blob_open(f->bs, sha, &fd, &size), 0);
        close(fd);
        assert_int_equal(size, len);
    }
    /* A stored blob hashed again gives its digests and block sums. */
    {
        struct blob_digests rd;
        struct blob_blocks rb = {0};
        assert_int_equal(blob_rehash(f->bs, sha, &rd, &rb), 0);
        assert_memory_equal(rd.sha256, sha, 32);
        assert_int_equal(rd.size, len);
        assert_int_equal(rb.count, 4);
        assert_true(rb.sums[3] == blob_block_sum(buf + 3 * MiB, len - 3 * MiB));
        blob_blocks_cleanup(&rb);
        uint8_t none[32] = {9};
        assert_int_equal(blob_rehash(f->bs, none, &rd, &rb), -ENOENT);
    }
    /* A partial file survives a store reopen (unlike temp files). */
    blob_writer *w = NULL;
    uint64_t have = 0;
    uint8_t other[32] = {1};
    assert_int_equal(blob_writer_resume(f->bs, other, &w, &have), 0);
    assert_int_equal(blob_writer_write(w, buf, 1000), 0);
    blob_writer_free(w);
    blob_store_free(f->bs);
    assert_int_equal(blob_store_open(f->dir, &f->bs), 0);
    assert_int_equal(blob_writer_resume(f->bs, other, &w, &have), 0);
    assert_int_equal(have, 1000);
    blob_writer_free(w);
    /* Listed by SHA-256, and removed by name. */
    struct seen { uint8_t sha[32]; int n; } seen = {{0}, 0};
    assert_int_equal(blob_partial_each(f->bs, count_partial, &seen), 0);
    assert_int_equal(seen.n, 1);
    assert_memory_equal(seen.sha, other, 32);
    blob_partial_remove(f->bs, other);
    seen.n = 0;
    assert_int_equal(blob_partial_each(f->bs, count_partial, &seen), 0);
    assert_int_equal(seen.n, 0);
    free(buf);
}

static void test_misuse(void **state)
{
    struct fixture *f = *state;
    blob_writer *w = NULL;
    struct blob_digests dig;
    assert_int_equal(blob_writer_new(f->bs, &w), 0);
    assert_int_equal(blob_writer_commit(w), -EINVAL); /* not finished */
    assert_int_equal(blob_writer_finish(w, &dig), 0);
    assert_int_equal(blob_writer_write(w, "x", 1), -EINVAL);
    assert_int_equal(blob_writer_finish(w, &dig), -EINVAL);
    assert_int_equal(blob_writer_commit(w), 0);
    assert_int_equal(blob_writer_commit(w), -EINVAL);
    blob_writer_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_known_vectors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunking, setup, teardown),
        cmocka_unit_test_setup_teardown(test_md5_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_three_lanes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_direct_io_fs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_startup_cleans_tmp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_shard_remade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corruption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
