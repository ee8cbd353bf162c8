/*
 * Unit tests for storage/repo.c and event.c against a real RocksDB in a
 * temporary directory.  The event log is read through repo_int.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "arca_err.h"
#include "fixture.h"
#include "repo.h"
#include "repo_int.h"
#include "util.h"

#include <ftw.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fixture {
    char dir[64];
    repo_db *db;
};

static const struct actor_ctx who = {"token:ci", "127.0.0.1:5555", "req-1"};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (fixture_tmpdir(f->dir, sizeof(f->dir), "repo") != 0)
        return -1;
    if (repo_db_open(f->dir, "dc1", &f->db) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    repo_db_free(f->db);
    fixture_rmtree(f->dir);
    free(f);
    return 0;
}

/* Digests and block sums of a small in-memory content (one block). */
struct content {
    struct blob_digests dig;
    uint64_t sum;
    struct blob_blocks blocks;
};

static void make_content(struct content *ct, const char *s)
{
    memset(ct, 0, sizeof(*ct));
    fixture_digests(s, &ct->dig, &ct->sum);
    ct->blocks.count = ct->dig.size ? 1 : 0;
    ct->blocks.sums = &ct->sum;
}

/* Field by field: the structs have padding. */
static void assert_dig_equal(const struct blob_digests *a, const struct blob_digests *b)
{
    assert_memory_equal(a->sha256, b->sha256, 32);
    assert_memory_equal(a->sha1, b->sha1, 20);
    assert_memory_equal(a->md5, b->md5, 16);
    assert_int_equal(a->size, b->size);
}

static void assert_artifact_equal(const struct artifact *a, const struct artifact *b)
{
    assert_memory_equal(&a->coord, &b->coord, sizeof(a->coord));
    assert_dig_equal(&a->dig, &b->dig);
    assert_int_equal(a->created_ms, b->created_ms);
    assert_string_equal(a->created_by, b->created_by);
    assert_int_equal(a->event_seq, b->event_seq);
}

static struct coord C(const char *repo, const char *name, const char *version, const char *path)
{
    struct coord c;
    const char *why;
    assert_int_equal(coord_set(&c, repo, name, version, path, &why), 0);
    return c;
}

static int put(repo_db *db, struct coord c, const char *content, struct artifact *out,
               int *created)
{
    struct content ct;
    make_content(&ct, content);
    return repo_put_artifact(db, &c, &ct.dig, &ct.blocks, &who, out, created);
}

static void put_new(repo_db *db, struct coord c, const char *content)
{
    struct artifact a;
    int created = -1;
    assert_int_equal(put(db, c, content, &a, &created), 0);
    assert_int_equal(created, 1);
}

static void test_put_get(void **state)
{
    struct fixture *f = *state;
    struct artifact a, g;
    int created = -1;
    struct content ct;
    struct coord c = C("libs", "app", "1.0", "bin/app.tar.gz");
    make_content(&ct, "hello");
    assert_int_equal(repo_get_artifact(f->db, &c, &g), ARCA_E_NOTFOUND);
    assert_int_equal(repo_put_artifact(f->db, &c, &ct.dig, &ct.blocks, &who, &a, &created), 0);
    assert_int_equal(created, 1);
    assert_dig_equal(&a.dig, &ct.dig);
    assert_string_equal(a.created_by, "token:ci");
    assert_int_equal(a.event_seq, 1);
    assert_true(a.created_ms > 0);

    assert_int_equal(repo_get_artifact(f->db, &c, &g), 0);
    assert_memory_equal(&g.coord, &c, sizeof(c));
    assert_dig_equal(&g.dig, &ct.dig);
    assert_int_equal(g.created_ms, a.created_ms);
    assert_string_equal(g.created_by, "token:ci");
    assert_int_equal(g.event_seq, 1);

    struct blob_digests d;
    struct blob_blocks b = {0};
    assert_int_equal(repo_get_blob(f->db, ct.dig.sha256, &d, &b), 0);
    assert_dig_equal(&d, &ct.dig);
    assert_int_equal(b.count, 1);
    assert_true(b.sums[0] == ct.sum);
    blob_blocks_cleanup(&b);
    assert_int_equal(repo_get_blob(f->db, ct.dig.sha256, &d, NULL), 0);

    uint8_t sha256[32];
    assert_int_equal(repo_find_sha1(f->db, ct.dig.sha1, sha256), 0);
    assert_memory_equal(sha256, ct.dig.sha256, 32);
    uint8_t zero[32] = {0};
    assert_int_equal(repo_find_sha1(f->db, zero, sha256), ARCA_E_NOTFOUND);
    assert_int_equal(repo_get_blob(f->db, zero, &d, NULL), ARCA_E_NOTFOUND);

    assert_int_equal(repo_repo_exists(f->db, "libs"), 0);
    assert_int_equal(repo_repo_exists(f->db, "nope"), ARCA_E_NOTFOUND);
    assert_int_equal(repo_repo_exists(f->db, "../x"), ARCA_E_NOTFOUND);
    assert_int_equal(repo_name_exists(f->db, "libs", "app"), 0);
    assert_int_equal(repo_name_exists(f->db, "libs", "ap"), ARCA_E_NOTFOUND);
    assert_int_equal(repo_version_exists(f->db, "libs", "app", "1.0"), 0);
    assert_int_equal(repo_version_exists(f->db, "libs", "app", "1"), ARCA_E_NOTFOUND);

    struct coord other = C("libs", "app", "1.0", "bin");
    assert_int_equal(repo_get_artifact(f->db, &other, &g), ARCA_E_NOTFOUND);
}

static void test_idempotent_and_conflict(void **state)
{
    struct fixture *f = *state;
    struct artifact a, b;
    int created = -1;
    struct repo_stats st;
    struct coord c = C("libs", "app", "1.0", "a.txt");
    assert_int_equal(put(f->db, c, "one", &a, &created), 0);
    assert_int_equal(created, 1);
    assert_int_equal(repo_get_stats(f->db, &st), 0);
    assert_int_equal(st.event_count, 1);

    assert_int_equal(put(f->db, c, "one", &b, &created), 0);
    assert_int_equal(created, 0);
    assert_artifact_equal(&a, &b);
    assert_int_equal(repo_get_stats(f->db, &st), 0);
    assert_int_equal(st.event_count, 1);
    assert_int_equal(st.artifact_count, 1);

    created = -1;
    assert_int_equal(put(f->db, c, "two", &b, &created), ARCA_E_CONFLICT);
    assert_int_equal(created, 0);
    assert_memory_equal(b.dig.sha256, a.dig.sha256, 32);
    assert_int_equal(repo_get_stats(f->db, &st), 0);
    assert_int_equal(st.event_count, 1);
    /* The loser's content was not indexed. */
    struct content two;
    struct blob_digests d;
    make_content(&two, "two");
    assert_int_equal(repo_get_blob(f->db, two.dig.sha256, &d, NULL), ARCA_E_NOTFOUND);
}

static void test_stats_and_dedup(void **state)
{
    struct fixture *f = *state;
    struct repo_stats st;
    assert_int_equal(repo_get_stats(f->db, &st), 0);
    assert_int_equal(st.blob_count, 0);
    assert_int_equal(st.event_count, 0);
    put_new(f->db, C("libs", "app", "1.0", "a"), "same-bytes");
    put_new(f->db, C("other", "lib", "2", "b/c"), "same-bytes");
    put_new(f->db, C("other", "lib", "2", "empty"), "");
    assert_int_equal(repo_get_stats(f->db, &st), 0);
    assert_int_equal(st.blob_count, 2);
    assert_int_equal(st.stored_bytes, 10);
    assert_int_equal(st.artifact_count, 3);
    assert_int_equal(st.logical_bytes, 20);
    assert_int_equal(st.event_count, 3);
}

static void test_checksum_deploy(void **state)
{
    struct fixture *f = *state;
    struct artifact a;
    int created = -1;
    struct content ct;
    struct coord c1 = C("libs", "app", "1", "x"), c2 = C("libs", "app", "1", "y");
    make_content(&ct, "deploy-me");
    /* Unknown content without block sums: nothing names it. */
    assert_int_equal(repo_put_artifact(f->db, &c1, &ct.dig, NULL, &who, &a, &created),
                     ARCA_E_NOTFOUND);
    /* Block sums that cannot belong to the size. */
    struct blob_blocks bad = {0, NULL};
    assert_int_equal(repo_put_artifact(f->db, &c1, &ct.dig, &bad, &who, &a, &created),
                     ARCA_E_INVALID);
    assert_int_equal(repo_put_artifact(f->db, &c1, &ct.dig, &ct.blocks, &who, &a, &created), 0);
    /* Known content by SHA-256 only: the index's digests fill the rest. */
    struct blob_digests only = {0};
    memcpy(only.sha256, ct.dig.sha256, 32);
    assert_int_equal(repo_put_artifact(f->db, &c2, &only, NULL, NULL, &a, &created), 0);
    assert_int_equal(created, 1);
    assert_dig_equal(&a.dig, &ct.dig);
    assert_string_equal(a.created_by, "");
    /* An invalid coordinate never reaches the index. */
    struct coord badc = c1;
    strcpy(badc.path, "../etc/passwd");
    assert_int_equal(repo_put_artifact(f->db, &badc, &ct.dig, &ct.blocks, &who, &a, &created),
                     ARCA_E_INVALID);
}

/* ---- listings ---- */

struct collect {
    char items[16][64];
    uint64_t extra[16];
    int n;
    int stop_at;
};

static int cb_repo(void *arg, const struct repo_entry *e)
{
    struct collect *c = arg;
    assert_true(e->created_ms > 0);
    snprintf(c->items[c->n++], 64, "%s", e->repo);
    return c->n == c->stop_at ? 42 : 0;
}

static int cb_name(void *arg, const struct name_entry *e)
{
    struct collect *c = arg;
    assert_true(e->created_ms > 0);
    snprintf(c->items[c->n++], 64, "%s", e->name);
    return 0;
}

static int cb_version(void *arg, const struct version_entry *e)
{
    struct collect *c = arg;
    c->extra[c->n] = e->st->file_count * 1000 + e->st->total_bytes;
    snprintf(c->items[c->n++], 64, "%s", e->version);
    return 0;
}

static int cb_file(void *arg, const struct artifact *a)
{
    struct collect *c = arg;
    c->extra[c->n] = a->dig.size;
    char full[2048];
    snprintf(full, sizeof(full), "%s/%s/%s/%s", a->coord.repo, a->coord.name, a->coord.version,
             a->coord.path);
    snprintf(c->items[c->n++], 64, "%.63s", full);
    return 0;
}

static bool even_repo(void *arg, const char *repo)
{
    return repo[1] == '2' || repo[1] == '4';
}

static void test_list_repos_names_files(void **state)
{
    struct fixture *f = *state;
    static const char *const repos[] = {"r1", "r2", "r3", "r4", "r5"};
    for (int i = 4; i >= 0; i--)
        put_new(f->db, C(repos[i], "n", "1", "f"), repos[i]);
    static const char *const names[] = {"a", "a-b", "a.b", "b", "\xc3\xa9"};
    for (int i = 0; i < 5; i++)
        put_new(f->db, C("r1", names[i], "1", "f"), names[i]);
    static const char *const files[] = {"a", "a/b", "a/b/c", "b", "z.txt"};
    for (int i = 0; i < 5; i++)
        put_new(f->db, C("r2", "lib", "1", files[i]), files[i]);

    char next[REPO_CURSOR_MAX], cur[REPO_CURSOR_MAX];
    struct collect c = {0};

    /* Repos: pages of 2, 2, 1. */
    cur[0] = '\0';
    int pages = 0;
    do {
        assert_int_equal(repo_list_repos(f->db, cur, 2, NULL, cb_repo, &c, next), 0);
        strcpy(cur, next);
        pages++;
    } while (cur[0]);
    assert_int_equal(pages, 3);
    assert_int_equal(c.n, 5);
    for (int i = 0; i < 5; i++)
        assert_string_equal(c.items[i], repos[i]);

    /* A page that ends exactly at the last item says there is no more. */
    memset(&c, 0, sizeof(c));
    assert_int_equal(repo_list_repos(f->db, NULL, 5, NULL, cb_repo, &c, next), 0);
    assert_string_equal(next, "");
    assert_int_equal(c.n, 5);

    /* A filter: r2 and r4 only.  Others are not counted and a cursor never names one. */
    memset(&c, 0, sizeof(c));
    cur[0] = '\0';
    pages = 0;
    do {
        assert_int_equal(repo_list_repos(f->db, cur, 1, even_repo, cb_repo, &c, next), 0);
        if (next[0]) {
            assert_string_equal(next + 9, pages == 0 ? "7232" : "7234"); /* hex of r2, r4 */
        }
        strcpy(cur, next);
        pages++;
    } while (cur[0]);
    assert_int_equal(pages, 2); /* no empty page after r4: r5 is not listed */
    assert_int_equal(c.n, 2);
    assert_string_equal(c.items[0], "r2");
    assert_string_equal(c.items[1], "r4");

    /* A callback's non-zero return stops the walk and is returned. */
    memset(&c, 0, sizeof(c));
    c.stop_at = 2;
    assert_int_equal(repo_list_repos(f->db, NULL, 10, NULL, cb_repo, &c, next), 42);
    assert_int_equal(c.n, 2);

    /* Names within r1 only, in byte order, pages of 2. */
    memset(&c, 0, sizeof(c));
    cur[0] = '\0';
    pages = 0;
    do {
        assert_int_equal(repo_list_names(f->db, "r1", cur, 2, cb_name, &c, next), 0);
        strcpy(cur, next);
        pages++;
    } while (cur[0]);
    assert_int_equal(pages, 3);
    assert_int_equal(c.n, 6); /* the five names and "n" */
    static const char *const want_names[] = {"a", "a-b", "a.b", "b", "n", "\xc3\xa9"};
    for (int i = 0; i < 6; i++)
        assert_string_equal(c.items[i], want_names[i]);

    /* Files by path, pages of 2. */
    memset(&c, 0, sizeof(c));
    cur[0] = '\0';
    pages = 0;
    do {
        assert_int_equal(repo_list_files(f->db, "r2", "lib", "1", cur, 2, cb_file, &c, next), 0);
        strcpy(cur, next);
        pages++;
    } while (cur[0]);
    assert_int_equal(pages, 3);
    assert_int_equal(c.n, 5);
    for (int i = 0; i < 5; i++) {
        char want[64];
        snprintf(want, sizeof(want), "r2/lib/1/%s", files[i]);
        assert_string_equal(c.items[i], want);
        assert_int_equal(c.extra[i], strlen(files[i]));
    }

    /* Empty listings. */
    memset(&c, 0, sizeof(c));
    assert_int_equal(repo_list_files(f->db, "r2", "lib", "2", NULL, 2, cb_file, &c, next), 0);
    assert_int_equal(c.n, 0);
    assert_string_equal(next, "");
    assert_int_equal(repo_list_names(f->db, "r9", "", 2, cb_name, &c, next), 0);
    assert_int_equal(c.n, 0);
}

static void test_list_versions(void **state)
{
    struct fixture *f = *state;
    static const char *const versions[] = {"1.0", "1.1", "2.0", "10.0", "0.9"};
    for (int i = 0; i < 5; i++) {
        put_new(f->db, C("libs", "app", versions[i], "a"), "aa");
        usleep(3000); /* distinct creation milliseconds */
    }
    put_new(f->db, C("libs", "app", "1.1", "b"), "bbbb");
    put_new(f->db, C("libs", "other", "9", "a"), "aa");

    char next[REPO_CURSOR_MAX], cur[REPO_CURSOR_MAX];
    struct collect c = {0};
    cur[0] = '\0';
    int pages = 0;
    do {
        assert_int_equal(repo_list_versions(f->db, "libs", "app", cur, 2, cb_version, &c, next),
                         0);
        strcpy(cur, next);
        pages++;
    } while (cur[0]);
    assert_int_equal(pages, 3);
    assert_int_equal(c.n, 5);
    for (int i = 0; i < 5; i++)
        assert_string_equal(c.items[i], versions[4 - i]); /* newest first */
    assert_int_equal(c.extra[3], 2 * 1000 + 6);          /* 1.1: two files, 6 bytes */
    assert_int_equal(c.extra[0], 1 * 1000 + 2);
}

static void test_bad_cursors(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 3; i++) {
        char p[8];
        snprintf(p, sizeof(p), "f%d", i);
        put_new(f->db, C("r", "n", "1", p), p);
    }
    char next[REPO_CURSOR_MAX];
    struct collect c = {0};
    assert_int_equal(repo_list_files(f->db, "r", "n", "1", NULL, 1, cb_file, &c, next), 0);
    assert_true(next[0] == 'f');
    char good[REPO_CURSOR_MAX];
    strcpy(good, next);

    static const char *const bad[] = {"zz", "f", "f0", "fzz", "f616", "n6630", "r00", "v6630",
                                      "f6600"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(repo_list_files(f->db, "r", "n", "1", bad[i], 1, cb_file, &c, next),
                         ARCA_E_INVALID);
    /* This listing's bind digits with a bad suffix: none, not hex, odd, a NUL. */
    static const char *const tails[] = {"", "zz", "616", "00", "6600"};
    for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
        char t[64];
        snprintf(t, sizeof(t), "%.9s%s", good, tails[i]);
        assert_int_equal(repo_list_files(f->db, "r", "n", "1", t, 1, cb_file, &c, next),
                         ARCA_E_INVALID);
    }
    /* Well formed, but bound to another listing's prefix (the bind digits changed). */
    char other[REPO_CURSOR_MAX];
    strcpy(other, good);
    other[1] = other[1] == '0' ? '1' : '0';
    assert_int_equal(repo_list_files(f->db, "r", "n", "1", other, 1, cb_file, &c, next),
                     ARCA_E_INVALID);
    /* A cursor from another version's files listing: same kind, another listing. */
    put_new(f->db, C("r", "n", "2", "f0"), "v2f0");
    put_new(f->db, C("r", "n", "2", "f1"), "v2f1");
    assert_int_equal(repo_list_files(f->db, "r", "n", "2", NULL, 1, cb_file, &c, next), 0);
    assert_true(next[0] == 'f');
    strcpy(other, next);
    assert_int_equal(repo_list_files(f->db, "r", "n", "1", other, 1, cb_file, &c, next),
                     ARCA_E_INVALID);
    /* A cursor from a names listing is refused by a files listing and vice versa. */
    assert_int_equal(repo_list_names(f->db, "r", good, 1, cb_name, &c, next), ARCA_E_INVALID);
    assert_int_equal(repo_list_versions(f->db, "r", "n", good, 1, cb_version, &c, next),
                     ARCA_E_INVALID);
    assert_int_equal(repo_list_repos(f->db, good, 1, NULL, cb_repo, &c, next), ARCA_E_INVALID);
    /* Over-long cursor. */
    char *huge = malloc(REPO_CURSOR_MAX + 10);
    memset(huge, 'a', REPO_CURSOR_MAX + 9);
    huge[0] = 'f';
    huge[REPO_CURSOR_MAX + 9] = '\0';
    assert_int_equal(repo_list_files(f->db, "r", "n", "1", huge, 1, cb_file, &c, next),
                     ARCA_E_INVALID);
    free(huge);
    /* Invalid parents. */
    assert_int_equal(repo_list_names(f->db, "..", NULL, 1, cb_name, &c, next), ARCA_E_INVALID);
    assert_int_equal(repo_list_files(f->db, "r", "n", "..", NULL, 1, cb_file, &c, next),
                     ARCA_E_INVALID);
    /* The good cursor still works. */
    memset(&c, 0, sizeof(c));
    assert_int_equal(repo_list_files(f->db, "r", "n", "1", good, 5, cb_file, &c, next), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.items[0], "r/n/1/f1");
}

/* ---- the event log ---- */

static void check_chain(repo_db *db, uint64_t expect_events)
{
    uint8_t prev[32] = {0};
    for (uint64_t seq = 1; seq <= expect_events; seq++) {
        char *text = NULL;
        assert_int_equal(event_read(db, seq, &text), 0);
        json_error_t e;
        json_t *ev = json_loads(text, 0, &e);
        assert_non_null(ev);
        assert_int_equal(json_integer_value(json_object_get(ev, "seq")), seq);
        assert_int_equal(json_integer_value(json_object_get(ev, "origin_seq")), seq);
        assert_string_equal(json_string_value(json_object_get(ev, "origin")), "dc1");
        assert_string_equal(json_string_value(json_object_get(ev, "action")), "artifact.put");
        assert_true(json_integer_value(json_object_get(ev, "hlc")) > 0);
        assert_non_null(json_object_get(json_object_get(ev, "details"), "sha256"));

        uint8_t p[32], h[32], want[32];
        const char *ph = json_string_value(json_object_get(ev, "prev"));
        const char *hh = json_string_value(json_object_get(ev, "hash"));
        assert_non_null(ph);
        assert_non_null(hh);
        assert_int_equal(hex_decode(ph, strlen(ph), p, 32), 0);
        assert_int_equal(hex_decode(hh, strlen(hh), h, 32), 0);
        assert_memory_equal(p, prev, 32); /* links to the previous event */

        json_object_del(ev, "prev");
        json_object_del(ev, "hash");
        char *canon = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
        EVP_DigestUpdate(ctx, p, 32);
        EVP_DigestUpdate(ctx, canon, strlen(canon));
        EVP_DigestFinal_ex(ctx, want, NULL);
        EVP_MD_CTX_free(ctx);
        assert_memory_equal(h, want, 32); /* the hash covers the event */
        memcpy(prev, h, 32);
        free(canon);
        json_decref(ev);
        free(text);
    }
    char *text = NULL;
    assert_int_equal(event_read(db, expect_events + 1, &text), ARCA_E_NOTFOUND);
}

static void test_event_chain(void **state)
{
    struct fixture *f = *state;
    struct artifact a;
    int created;
    put_new(f->db, C("libs", "app", "1", "a"), "a");
    put_new(f->db, C("libs", "app", "1", "b"), "b");
    assert_int_equal(put(f->db, C("libs", "app", "1", "b"), "b", &a, &created), 0); /* no event */
    put_new(f->db, C("libs", "app", "2", "a"), "a");
    check_chain(f->db, 3);

    char *text = NULL;
    assert_int_equal(event_read(f->db, 2, &text), 0);
    json_t *ev = json_loads(text, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(ev, "subject")), "libs/app/1/b");
    assert_string_equal(json_string_value(json_object_get(ev, "actor")), "token:ci");
    assert_string_equal(json_string_value(json_object_get(ev, "request_id")), "req-1");
    json_decref(ev);
    free(text);
}

static void test_reopen_and_readonly(void **state)
{
    struct fixture *f = *state;
    struct artifact a;
    struct repo_stats st, st2;
    put_new(f->db, C("libs", "app", "1", "a"), "first");
    put_new(f->db, C("libs", "app", "1", "b"), "first");
    assert_int_equal(repo_get_stats(f->db, &st), 0);

    /* A read-only open beside the writer sees what was written. */
    repo_db *ro = NULL;
    assert_int_equal(repo_db_open_readonly(f->dir, &ro), 0);
    struct coord ca = C("libs", "app", "1", "a");
    assert_int_equal(repo_get_artifact(ro, &ca, &a), 0);
    assert_int_equal(repo_get_stats(ro, &st2), 0);
    assert_memory_equal(&st, &st2, sizeof(st));
    int created = -1;
    assert_int_equal(put(ro, C("libs", "app", "1", "c"), "x", &a, &created), ARCA_E_DB);
    repo_db_free(ro);

    /* Reopen: everything persisted, the chain continues. */
    repo_db_free(f->db);
    f->db = NULL;
    assert_int_equal(repo_db_open(f->dir, "dc2", &f->db), ARCA_E_CONFIG);
    assert_null(f->db);
    assert_int_equal(repo_db_open(f->dir, "dc1", &f->db), 0);
    assert_int_equal(repo_get_artifact(f->db, &ca, &a), 0);
    assert_int_equal(repo_get_stats(f->db, &st2), 0);
    assert_memory_equal(&st, &st2, sizeof(st));
    assert_int_equal(repo_version_exists(f->db, "libs", "app", "1"), 0);
    put_new(f->db, C("libs", "app", "2", "a"), "second");
    check_chain(f->db, 3);
    assert_int_equal(repo_get_stats(f->db, &st2), 0);
    assert_int_equal(st2.event_count, 3);
    assert_int_equal(st2.blob_count, 2);

    repo_db *none = NULL;
    assert_int_equal(repo_db_open_readonly("/nonexistent/arca-index", &none), ARCA_E_DB);
    assert_null(none);
}

struct walk_ctx {
    int n;
    uint8_t last[32];
};

static int cb_walk(void *arg, const struct blob_digests *dig, const struct blob_blocks *blocks)
{
    struct walk_ctx *w = arg;
    if (w->n > 0)
        assert_true(memcmp(w->last, dig->sha256, 32) < 0);
    memcpy(w->last, dig->sha256, 32);
    assert_int_equal(blocks->count, dig->size ? 1 : 0);
    w->n++;
    return 0;
}

static void test_walk_blobs(void **state)
{
    struct fixture *f = *state;
    put_new(f->db, C("r", "n", "1", "a"), "x");
    put_new(f->db, C("r", "n", "1", "b"), "y");
    put_new(f->db, C("r", "n", "1", "c"), "x");
    put_new(f->db, C("r", "n", "1", "d"), "");
    struct walk_ctx w = {0};
    assert_int_equal(repo_walk_blobs(f->db, cb_walk, &w), 0);
    assert_int_equal(w.n, 3);
}

/* ---- concurrency ---- */

struct racer {
    repo_db *db;
    int idx;
    int rc;
    int created;
    struct artifact out;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct content ct;
    struct coord c;
    const char *why;
    coord_set(&c, "libs", "app", "1", "race.bin", &why);
    make_content(&ct, r->idx % 2 ? "content-odd" : "content-even");
    r->rc = repo_put_artifact(r->db, &c, &ct.dig, &ct.blocks, &who, &r->out, &r->created);
    return NULL;
}

static void test_concurrent_puts(void **state)
{
    struct fixture *f = *state;
    struct racer r[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        r[i] = (struct racer){.db = f->db, .idx = i, .created = -1};
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    int winners = 0, winner = -1;
    for (int i = 0; i < 8; i++) {
        if (r[i].rc == 0 && r[i].created == 1) {
            winners++;
            winner = i;
        }
    }
    assert_int_equal(winners, 1);
    for (int i = 0; i < 8; i++) {
        if (i == winner)
            continue;
        assert_memory_equal(r[i].out.dig.sha256, r[winner].out.dig.sha256, 32);
        if (i % 2 == winner % 2) {
            assert_int_equal(r[i].rc, 0);
            assert_int_equal(r[i].created, 0);
        } else {
            assert_int_equal(r[i].rc, ARCA_E_CONFLICT);
        }
    }
    struct repo_stats st;
    assert_int_equal(repo_get_stats(f->db, &st), 0);
    assert_int_equal(st.event_count, 1);
    assert_int_equal(st.artifact_count, 1);
    assert_int_equal(st.blob_count, 1);
    check_chain(f->db, 1);
}

/*
 * Artifact records are read by a direct reader for the shape the encoder
 * writes, and by jansson otherwise.  Round trips through the encoder with
 * awkward strings (escapes go to jansson), and hand-written records in other
 * shapes, compared with what a plain jansson reading gives.
 */
static void ref_decode(const char *text, int *rc, struct artifact *a)
{
    json_t *o = json_loads(text, 0, NULL);
    memset(a, 0, sizeof(*a));
    *rc = ARCA_E_DB;
    if (!o)
        return;
    const char *hex[3] = {"sha256", "sha1", "md5"};
    uint8_t *dst[3] = {a->dig.sha256, a->dig.sha1, a->dig.md5};
    size_t n[3] = {32, 20, 16};
    for (int i = 0; i < 3; i++) {
        const char *h = json_string_value(json_object_get(o, hex[i]));
        if (!h || hex_decode(h, strlen(h), dst[i], n[i]) != 0)
            goto out;
    }
    const char *num[3] = {"size", "created_ms", "event_seq"};
    uint64_t *nd[3] = {&a->dig.size, &a->created_ms, &a->event_seq};
    for (int i = 0; i < 3; i++) {
        json_t *v = json_object_get(o, num[i]);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            goto out;
        *nd[i] = (uint64_t)json_integer_value(v);
    }
    json_t *h = json_object_get(o, "hlc");
    a->hlc = json_is_integer(h) && json_integer_value(h) >= 0 ? (uint64_t)json_integer_value(h) : 0;
    const char *by = json_string_value(json_object_get(o, "created_by"));
    snprintf(a->created_by, sizeof(a->created_by), "%s", by ? by : "");
    const char *og = json_string_value(json_object_get(o, "origin"));
    snprintf(a->origin, sizeof(a->origin), "%s", og ? og : "");
    a->revoked = json_is_true(json_object_get(o, "revoked"));
    *rc = 0;
out:
    json_decref(o);
}

static void assert_same_artifact(const struct artifact *x, const struct artifact *y)
{
    assert_memory_equal(x->dig.sha256, y->dig.sha256, 32);
    assert_memory_equal(x->dig.sha1, y->dig.sha1, 20);
    assert_memory_equal(x->dig.md5, y->dig.md5, 16);
    assert_int_equal(x->dig.size, y->dig.size);
    assert_int_equal(x->created_ms, y->created_ms);
    assert_int_equal(x->event_seq, y->event_seq);
    assert_int_equal(x->hlc, y->hlc);
    assert_string_equal(x->created_by, y->created_by);
    assert_string_equal(x->origin, y->origin);
    assert_int_equal(x->revoked, y->revoked);
}

static void test_artifact_record_readers(void **state)
{
    (void)state;
    static const char *names[] = {"", "ci-bot", "Zoë Ångström", "quote\"d", "back\\slash",
                                  "tab\there", "nl\nx", "\x01ctl", "slash/ok"};
    srand(7);
    for (int t = 0; t < 2000; t++) {
        struct artifact a, got;
        memset(&a, 0, sizeof(a));
        for (size_t i = 0; i < sizeof(a.dig.sha256); i++)
            a.dig.sha256[i] = (uint8_t)rand();
        for (size_t i = 0; i < sizeof(a.dig.sha1); i++)
            a.dig.sha1[i] = (uint8_t)rand();
        for (size_t i = 0; i < sizeof(a.dig.md5); i++)
            a.dig.md5[i] = (uint8_t)rand();
        a.dig.size = t % 3 == 0 ? 0 : ((uint64_t)rand() << 31 | (uint64_t)rand());
        a.created_ms = (uint64_t)rand() * 1000;
        a.event_seq = (uint64_t)t;
        a.hlc = t % 5 == 0 ? 0 : ((uint64_t)rand() << 20);
        snprintf(a.created_by, sizeof(a.created_by), "%s", names[t % 9]);
        snprintf(a.origin, sizeof(a.origin), "%s", names[(t / 9) % 9]);
        a.revoked = t % 4 == 0;
        size_t len = 0;
        char *text = rec_artifact_encode(&a, &len);
        assert_non_null(text);
        memset(&got, 0xAB, sizeof(got));
        assert_int_equal(rec_artifact_decode(text, len, &got), 0);
        assert_same_artifact(&got, &a);
        free(text);
    }

    const char *D = "\"md5\":\"00112233445566778899aabbccddeeff\","
                    "\"sha1\":\"00112233445566778899aabbccddeeff00112233\","
                    "\"sha256\":\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"";
    char text[1024];
    const char *shapes[] = {
        /* accepted */
        "{%s,\"size\":5,\"created_ms\":7,\"event_seq\":9}",
        " { %s , \"size\" : 5 ,\n\"created_ms\":7,\t\"event_seq\":9 , \"hlc\":11 } ",
        "{\"event_seq\":9,\"created_ms\":7,\"size\":5,%s,\"revoked\":false,\"origin\":\"dc2\"}",
        "{%s,\"size\":5,\"created_ms\":7,\"event_seq\":9,\"future\":\"x\",\"n\":3,\"f\":true}",
        "{%s,\"size\":5,\"created_ms\":7,\"event_seq\":9,\"future\":{\"a\":[1,2]}}",
        "{%s,\"size\":5,\"size\":6,\"created_ms\":7,\"event_seq\":9}",
        "{%s,\"size\":5,\"created_ms\":7,\"event_seq\":9,\"created_by\":\"a\\u00e9\\\"b\"}",
        "{%s,\"size\":5,\"created_ms\":7,\"event_seq\":9,\"hlc\":-3}",
        "{%s,\"size\":5,\"created_ms\":7,\"event_seq\":9,\"revoked\":1}",
        "{%s,\"size\":5,\"created_ms\":7,\"event_seq\":9,\"origin\":null}",
        "{%s,\"size\":9223372036854775807,\"created_ms\":7,\"event_seq\":9}",
        /* refused */
        "{%s,\"created_ms\":7,\"event_seq\":9}",
        "{%s,\"size\":-5,\"created_ms\":7,\"event_seq\":9}",
        "{%s,\"size\":5.0,\"created_ms\":7,\"event_seq\":9}",
        "{%s,\"size\":05,\"created_ms\":7,\"event_seq\":9}",
        "{%s,\"size\":\"5\",\"created_ms\":7,\"event_seq\":9}",
        "{%s,\"size\":5,\"created_ms\":7,\"event_seq\":9} x",
        "{%s,\"size\":5,\"created_ms\":7,\"event_seq\":9",
        "{%s,\"size\":5,\"created_ms\":7,\"event_seq\":9,}",
        "{%s,\"size\":18446744073709551615,\"created_ms\":7,\"event_seq\":9}",
        "[%s]",
        "{}%s",
    };
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        const char *mark = strstr(shapes[i], "%s"); /* where the digests go */
        assert_non_null(mark);
        snprintf(text, sizeof(text), "%.*s%s%s", (int)(mark - shapes[i]), shapes[i], D, mark + 2);
        struct artifact want, got;
        int want_rc;
        ref_decode(text, &want_rc, &want);
        memset(&got, 0, sizeof(got));
        int rc = rec_artifact_decode(text, strlen(text), &got);
        if (rc != want_rc)
            fail_msg("record %zu (%s): rc %d, jansson %d", i, text, rc, want_rc);
        assert_int_equal(rc, i < 11 ? 0 : ARCA_E_DB);
        if (rc == 0)
            assert_same_artifact(&got, &want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_artifact_record_readers),
        cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_and_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_and_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checksum_deploy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_repos_names_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_cursors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_and_readonly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_walk_blobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_puts, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
