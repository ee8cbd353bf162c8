/*
 * Replication's merge rules, as a property test over real RocksDB indexes:
 * three centres make random local changes (uploads with clashing bytes,
 * promotions, revocations, deletions, property and build-record writes,
 * deployments) and exchange their logs in random partial steps; once every
 * log has reached every centre, all state digests are equal.  Fresh
 * observers fed the logs in different orders, and fed them twice, end with
 * the same digest too.  Also: the conflict winner rule on a fixed case,
 * idempotency, and refusal of an origin's events out of order.  Range digests: their
 * shape, equality at every level between equal centres, and narrowing two
 * centres down to exactly the keys that differ.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "arca_err.h"
#include "fixture.h"
#include "lifecycle.h"
#include "repo.h"
#include "repo_int.h"
#include "replica.h"
#include "util.h"

#include <ftw.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NCENTRES 3
#define NCONTENTS 6

static const char *const contents[NCONTENTS] = {"alpha", "bravo", "charlie", "delta", "echo",
                                                "foxtrot"};

struct centre {
    char dir[64];
    char id[8];
    repo_db *db;
};

static void centre_open(struct centre *c, const char *id)
{
    assert_int_equal(fixture_tmpdir(c->dir, sizeof(c->dir), "repl"), 0);
    snprintf(c->id, sizeof(c->id), "%s", id);
    assert_int_equal(repo_db_open(c->dir, id, &c->db), 0);
}

static void centre_close(struct centre *c)
{
    repo_db_free(c->db);
    fixture_rmtree(c->dir);
}

static int put(struct centre *c, const char *name, const char *version, const char *path,
               const char *content)
{
    struct blob_digests dig;
    uint64_t sum;
    struct blob_blocks blocks = {.count = 1, .sums = &sum};
    struct coord co;
    struct artifact a;
    const char *why;
    int created;
    struct actor_ctx who = {c->id, NULL, NULL};
    struct op_result res = {0};
    fixture_digests(content, &dig, &sum);
    assert_int_equal(coord_set(&co, "r", name, version, path, &why), 0);
    int rc = repo_put_artifact_ex(c->db, &co, &dig, &blocks, NULL, &who, &a, &created, &res);
    op_result_clear(&res);
    return rc;
}

/* The block sums for the content an event names (the replicator computes them on arrival). */
static const struct blob_blocks *blocks_for(const char *event, uint64_t *sum,
                                            struct blob_blocks *blocks)
{
    const struct blob_blocks *b = NULL;
    for (int i = 0; i < NCONTENTS && !b; i++)
        b = fixture_blocks_of(event, contents[i], sum, blocks);
    return b;
}

/* Feeds dst the events src's log holds from seq `from` on, at most n of them. */
static void sync_log(struct centre *src, struct centre *dst, uint64_t from, uint64_t n)
{
    struct repo_stats st;
    repo_get_stats(src->db, &st);
    for (uint64_t seq = from; seq <= st.event_count && n > 0; seq++, n--) {
        char *json = NULL;
        uint64_t sum;
        struct blob_blocks blocks;
        bool applied;
        assert_int_equal(event_read(src->db, seq, &json), 0);
        const struct blob_blocks *b = blocks_for(json, &sum, &blocks);
        int rc = repo_apply_remote(dst->db, json, strlen(json), b, &applied);
        if (rc != 0)
            fail_msg("apply %s -> %s seq %llu: %d: %s", src->id, dst->id,
                     (unsigned long long)seq, rc, json);
        free(json);
    }
}

/* On a mismatch: the replicated column families as text, to diff. */
static void dump(struct centre *c, const char *path)
{
    static const enum repo_cf cfs[] = {CF_REPOS, CF_NAMES, CF_VERSIONS, CF_ARTIFACTS, CF_BLOBS,
                                       CF_SHA1, CF_PROPS, CF_PROPIDX, CF_STAGEIDX, CF_BUILDS,
                                       CF_CONFLICTS, CF_BLOBREFS, CF_TOKENS, CF_ORIGINS};
    FILE *f = fopen(path, "w");
    for (size_t i = 0; f && i < sizeof(cfs) / sizeof(cfs[0]); i++) {
        rocksdb_iterator_t *it = rocksdb_create_iterator_cf(c->db->db, c->db->ropts,
                                                            c->db->cf[cfs[i]]);
        for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
            size_t kl, vl;
            const char *k = rocksdb_iter_key(it, &kl);
            const char *v = rocksdb_iter_value(it, &vl);
            fprintf(f, "%d ", (int)cfs[i]);
            for (size_t j = 0; j < kl; j++)
                fputc(k[j] >= 32 && k[j] < 127 ? k[j] : '.', f);
            fputs(" = ", f);
            for (size_t j = 0; j < vl; j++)
                fputc(v[j] >= 32 && v[j] < 127 ? v[j] : '.', f);
            fputc('\n', f);
        }
        rocksdb_iter_destroy(it);
    }
    if (f)
        fclose(f);
}

static uint64_t digest_of(struct centre *c)
{
    uint64_t d = 0;
    assert_int_equal(repo_state_digest(c->db, &d), 0);
    return d;
}

/* ---- range digests and narrowing ------------------------------------------------------- */

static int fetch_centre(void *arg, const char *part, const void *prefix, size_t plen,
                        struct repo_range *out)
{
    struct centre *c = arg;
    return repo_range_digest(c->db, part, prefix, plen, out);
}

#define FOUND_MAX 64

struct found {
    size_t n;
    char part[FOUND_MAX][16];
    char key[FOUND_MAX][64];
    size_t len[FOUND_MAX];
    enum repo_diff_kind kind[FOUND_MAX];
};

static int on_found(void *arg, const char *part, const char *key, size_t len,
                    enum repo_diff_kind kind)
{
    struct found *f = arg;
    assert_true(f->n < FOUND_MAX);
    assert_true(len <= sizeof(f->key[0]));
    snprintf(f->part[f->n], sizeof(f->part[0]), "%s", part);
    memcpy(f->key[f->n], key, len);
    f->len[f->n] = len;
    f->kind[f->n++] = kind;
    return 0;
}

/* Every differing key of every part between a and b. */
static void diff_all(struct centre *a, struct centre *b, struct found *f)
{
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; repo_digest_part_name(i); i++)
        assert_int_equal(repo_range_diff(repo_digest_part_name(i), fetch_centre, a, fetch_centre,
                                         b, on_found, f),
                         0);
}

static void assert_found(const struct found *f, size_t i, const char *part, const char *key,
                         size_t len, enum repo_diff_kind kind)
{
    assert_true(i < f->n);
    assert_string_equal(f->part[i], part);
    assert_int_equal(f->len[i], len);
    assert_memory_equal(f->key[i], key, len);
    assert_int_equal(f->kind[i], kind);
}

/* The artifact key of r/NAME/VERSION/PATH. */
static size_t art_key(char *buf, const char *name, const char *version, const char *path)
{
    return key_make(buf, false, "r", name, version, path);
}

static void raw_put(struct centre *c, enum repo_cf cf, const char *k, size_t kl, const char *v)
{
    char *err = NULL;
    rocksdb_put_cf(c->db->db, c->db->wopts, c->db->cf[cf], k, kl, v, strlen(v), &err);
    assert_null(err);
}

static void raw_delete(struct centre *c, enum repo_cf cf, const char *k, size_t kl)
{
    char *err = NULL;
    rocksdb_delete_cf(c->db->db, c->db->wopts, c->db->cf[cf], k, kl, &err);
    assert_null(err);
}

static char *raw_get(struct centre *c, enum repo_cf cf, const char *k, size_t kl)
{
    char *err = NULL;
    size_t vl;
    char *v = rocksdb_get_cf(c->db->db, c->db->ropts, c->db->cf[cf], k, kl, &vl, &err);
    assert_null(err);
    assert_non_null(v);
    char *s = malloc(vl + 1);
    memcpy(s, v, vl);
    s[vl] = '\0';
    rocksdb_free(v);
    return s;
}

/* 10 versions of r/app with 20 files each: 200 artifacts, 20 under each version. */
static void fill(struct centre *c)
{
    for (int v = 0; v < 10; v++)
        for (int p = 0; p < 20; p++) {
            char version[8], path[16];
            snprintf(version, sizeof(version), "v%d", v);
            snprintf(path, sizeof(path), "f%02d.bin", p);
            assert_int_equal(put(c, "app", version, path, contents[(v + p) % NCONTENTS]), 0);
        }
}

/* Both centres answer the same at prefix, and at every prefix below it. */
static void assert_same_below(struct centre *a, struct centre *b, const char *part, char *prefix,
                              size_t plen, int *ranges)
{
    struct repo_range *ra = malloc(sizeof(*ra)), *rb = malloc(sizeof(*rb));
    assert_int_equal(repo_range_digest(a->db, part, prefix, plen, ra), 0);
    assert_int_equal(repo_range_digest(b->db, part, prefix, plen, rb), 0);
    (*ranges)++;
    assert_int_equal(ra->count, rb->count);
    assert_true(ra->digest == rb->digest);
    assert_int_equal(ra->leaf, rb->leaf);
    assert_int_equal(ra->has_exact, rb->has_exact);
    assert_int_equal(ra->nbuckets, rb->nbuckets);
    assert_int_equal(ra->nkeys, rb->nkeys);
    for (size_t i = 0; i < ra->nkeys; i++) {
        assert_int_equal(ra->keys[i].len, rb->keys[i].len);
        assert_memory_equal(ra->keys[i].key, rb->keys[i].key, ra->keys[i].len);
        assert_true(ra->keys[i].digest == rb->keys[i].digest);
    }
    for (size_t i = 0; i < ra->nbuckets; i++) {
        assert_int_equal(ra->buckets[i].byte, rb->buckets[i].byte);
        assert_int_equal(ra->buckets[i].count, rb->buckets[i].count);
        assert_true(ra->buckets[i].digest == rb->buckets[i].digest);
        if (!ra->leaf) {
            prefix[plen] = (char)ra->buckets[i].byte;
            assert_same_below(a, b, part, prefix, plen + 1, ranges);
        }
    }
    repo_range_cleanup(ra);
    repo_range_cleanup(rb);
    free(ra);
    free(rb);
}

static void test_range_digest_shape(void **state)
{
    (void)state;
    struct centre a;
    struct repo_part_digest parts[REPO_DIGEST_PARTS];
    struct repo_range *r = malloc(sizeof(*r)), *sub = malloc(sizeof(*sub));
    char key[KEY_MAX];
    uint64_t whole = 0, folded = 0, sum = 0;
    centre_open(&a, "dcA");
    fill(&a);

    assert_int_equal(repo_state_digest_parts(a.db, &whole, parts), 0);
    assert_true(whole == digest_of(&a));
    size_t art = 0;
    while (strcmp(parts[art].part, "artifacts") != 0)
        art++;
    assert_int_equal(parts[art].count, 200);

    /* The whole part: buckets, consistent with the part digest and with a look one level down. */
    assert_int_equal(repo_range_digest(a.db, "artifacts", NULL, 0, r), 0);
    assert_int_equal(r->count, 200);
    assert_true(r->digest == parts[art].digest);
    assert_false(r->leaf);
    assert_int_equal(r->nkeys, 0);
    assert_false(r->has_exact);
    for (size_t i = 0; i < r->nbuckets; i++) {
        char b = (char)r->buckets[i].byte;
        if (i > 0)
            assert_true(r->buckets[i - 1].byte < r->buckets[i].byte);
        sum += r->buckets[i].count;
        assert_int_equal(repo_range_digest(a.db, "artifacts", &b, 1, sub), 0);
        assert_int_equal(sub->count, r->buckets[i].count);
        assert_true(sub->digest == r->buckets[i].digest);
        repo_range_cleanup(sub);
    }
    assert_int_equal(sum, 200);
    repo_range_cleanup(r);

    /* One version: 20 keys, a leaf, its keys in order and folding to its digest. */
    size_t plen = key_make(key, true, "r", "app", "v3", NULL);
    assert_int_equal(repo_range_digest(a.db, "artifacts", key, plen, r), 0);
    assert_int_equal(r->count, 20);
    assert_true(r->leaf);
    assert_int_equal(r->nkeys, 20);
    assert_int_equal(repo_range_fold(r->keys, r->nkeys, &folded), 0);
    assert_true(folded == r->digest);
    assert_int_equal(r->nbuckets, 1); /* every path starts with 'f' */
    assert_int_equal(r->buckets[0].byte, 'f');
    size_t kl = art_key(key, "app", "v3", "f07.bin");
    assert_int_equal(r->keys[7].len, kl);
    assert_memory_equal(r->keys[7].key, key, kl);
    repo_range_cleanup(r);

    /* A whole key as the prefix: it is the exact key. */
    assert_int_equal(repo_range_digest(a.db, "artifacts", key, kl, r), 0);
    assert_int_equal(r->count, 1);
    assert_true(r->has_exact);
    assert_int_equal(r->nbuckets, 0);
    assert_true(r->exact_digest == r->keys[0].digest);
    repo_range_cleanup(r);

    /* Just over a leaf: more than REPO_RANGE_LEAF_MAX keys answer with buckets only. */
    plen = key_make(key, true, "r", "app", NULL, NULL);
    assert_int_equal(repo_range_digest(a.db, "artifacts", key, plen, r), 0);
    assert_int_equal(r->count, 200);
    assert_false(r->leaf);
    assert_int_equal(r->nbuckets, 1); /* 'v' */
    repo_range_cleanup(r);

    /* An empty range, an unknown or unreplicated part, a prefix longer than any key. */
    assert_int_equal(repo_range_digest(a.db, "artifacts", "zzz", 3, r), 0);
    assert_int_equal(r->count, 0);
    assert_true(r->leaf);
    assert_int_equal(repo_range_fold(NULL, 0, &folded), 0);
    assert_true(r->digest == folded);
    assert_int_equal(repo_range_digest(a.db, "events", NULL, 0, r), ARCA_E_NOTFOUND);
    assert_int_equal(repo_range_digest(a.db, "nope", NULL, 0, r), ARCA_E_NOTFOUND);
    assert_int_equal(repo_range_digest(a.db, NULL, NULL, 0, r), ARCA_E_NOTFOUND);
    memset(key, 'r', sizeof(key));
    assert_int_equal(repo_range_digest(a.db, "artifacts", key, REPO_RANGE_PREFIX_MAX + 1, r),
                     ARCA_E_INVALID);
    assert_null(repo_digest_part_name(REPO_DIGEST_PARTS));
    repo_range_cleanup(r);
    free(r);
    free(sub);
    centre_close(&a);
}

static void test_range_diff_narrows_to_the_key(void **state)
{
    (void)state;
    struct centre a, b;
    struct repo_part_digest pa[REPO_DIGEST_PARTS], pb[REPO_DIGEST_PARTS];
    struct found *f = malloc(sizeof(*f));
    char key[KEY_MAX], prefix[KEY_MAX];
    uint64_t da, db;
    int ranges = 0;
    centre_open(&a, "dcA");
    centre_open(&b, "dcB");
    fill(&a);
    assert_int_equal(put(&b, "lib", "1.0", "x.jar", "echo"), 0);
    sync_log(&a, &b, 1, UINT64_MAX);
    sync_log(&b, &a, 1, UINT64_MAX);

    /* Equal centres: equal at every level of every part, and nothing to narrow. */
    assert_int_equal(repo_state_digest_parts(a.db, &da, pa), 0);
    assert_int_equal(repo_state_digest_parts(b.db, &db, pb), 0);
    assert_true(da == db);
    for (size_t i = 0; i < REPO_DIGEST_PARTS; i++) {
        assert_string_equal(pa[i].part, pb[i].part);
        assert_int_equal(pa[i].count, pb[i].count);
        assert_true(pa[i].digest == pb[i].digest);
        assert_same_below(&a, &b, pa[i].part, prefix, 0, &ranges);
    }
    assert_true(ranges > 15 + 10);
    diff_all(&a, &b, f);
    assert_int_equal(f->n, 0);

    /* A local sequence number is no divergence: event_seq differs, the digests do not. */
    size_t kl = art_key(key, "app", "v4", "f02.bin");
    char *v = raw_get(&b, CF_ARTIFACTS, key, kl);
    json_t *j = json_loads(v, 0, NULL);
    assert_non_null(json_object_get(j, "event_seq"));
    json_object_set_new(j, "event_seq", json_integer(999999));
    char *text = json_dumps(j, JSON_COMPACT);
    raw_put(&b, CF_ARTIFACTS, key, kl, text);
    free(text);
    assert_true(digest_of(&a) == digest_of(&b));

    /* One altered record: the narrowing finds exactly it. */
    json_object_set_new(j, "size", json_integer(12345));
    text = json_dumps(j, JSON_COMPACT);
    raw_put(&b, CF_ARTIFACTS, key, kl, text);
    free(text);
    json_decref(j);
    free(v);
    assert_true(digest_of(&a) != digest_of(&b));
    assert_int_equal(repo_state_digest_parts(b.db, &db, pb), 0);
    for (size_t i = 0; i < REPO_DIGEST_PARTS; i++)
        assert_int_equal(pa[i].digest == pb[i].digest, strcmp(pa[i].part, "artifacts") != 0);
    diff_all(&a, &b, f);
    assert_int_equal(f->n, 1);
    assert_found(f, 0, "artifacts", key, kl, REPO_DIFF_DIFFERS);

    /* A key missing at b, one only at b, and one index key only at a: all three, in key order. */
    char gone[KEY_MAX], extra[KEY_MAX], idx[KEY_MAX];
    size_t gl = art_key(gone, "app", "v0", "f19.bin");
    size_t el = art_key(extra, "app", "v9", "f05.bin.bak");
    size_t il = key_make(idx, false, "prod", "r", "app", "v7");
    raw_delete(&b, CF_ARTIFACTS, gone, gl);
    raw_put(&b, CF_ARTIFACTS, extra, el, "{}");
    raw_put(&a, CF_STAGEIDX, idx, il, "");
    diff_all(&a, &b, f);
    assert_int_equal(f->n, 4);
    assert_found(f, 0, "artifacts", gone, gl, REPO_DIFF_ONLY_A);
    assert_found(f, 1, "artifacts", key, kl, REPO_DIFF_DIFFERS);
    assert_found(f, 2, "artifacts", extra, el, REPO_DIFF_ONLY_B);
    assert_found(f, 3, "stageidx", idx, il, REPO_DIFF_ONLY_A);
    /* The other way round, only-a and only-b swap. */
    diff_all(&b, &a, f);
    assert_int_equal(f->n, 4);
    assert_found(f, 0, "artifacts", gone, gl, REPO_DIFF_ONLY_B);
    assert_found(f, 3, "stageidx", idx, il, REPO_DIFF_ONLY_B);
    free(f);
    centre_close(&a);
    centre_close(&b);
}

/* One centre answers key by key, the other with buckets: the leaf is folded, not asked again. */
struct counting {
    struct centre *c;
    int fetches;
};

static int fetch_counting(void *arg, const char *part, const void *prefix, size_t plen,
                          struct repo_range *out)
{
    struct counting *k = arg;
    k->fetches++;
    return repo_range_digest(k->c->db, part, prefix, plen, out);
}

static void test_range_diff_leaf_against_buckets(void **state)
{
    (void)state;
    struct centre a, b;
    struct found *f = malloc(sizeof(*f));
    char key[KEY_MAX];
    centre_open(&a, "dcA");
    centre_open(&b, "dcB");
    fill(&a);
    sync_log(&a, &b, 1, UINT64_MAX);
    /* b gets 50 more files in v3 (70 there: buckets), which a never sees. */
    for (int p = 0; p < 50; p++) {
        char path[16];
        snprintf(path, sizeof(path), "g%02d.bin", p);
        assert_int_equal(put(&b, "app", "v3", path, contents[p % NCONTENTS]), 0);
    }
    /* ...and a gets two of its own there, around them (22 keys, still a leaf). */
    assert_int_equal(put(&a, "app", "v3", "e00.bin", "alpha"), 0);
    assert_int_equal(put(&a, "app", "v3", "h00.bin", "alpha"), 0);
    struct counting ka = {&a, 0}, kb = {&b, 0};
    memset(f, 0, sizeof(*f));
    assert_int_equal(
        repo_range_diff("artifacts", fetch_counting, &ka, fetch_counting, &kb, on_found, f), 0);
    assert_int_equal(f->n, 52);
    size_t kl = art_key(key, "app", "v3", "e00.bin");
    assert_found(f, 0, "artifacts", key, kl, REPO_DIFF_ONLY_A);
    for (int p = 0; p < 50; p++) {
        char path[16];
        snprintf(path, sizeof(path), "g%02d.bin", p);
        kl = art_key(key, "app", "v3", path);
        assert_found(f, (size_t)p + 1, "artifacts", key, kl, REPO_DIFF_ONLY_B);
    }
    kl = art_key(key, "app", "v3", "h00.bin");
    assert_found(f, 51, "artifacts", key, kl, REPO_DIFF_ONLY_A);
    /* a answered key by key at r/app/v3/ and was not asked below it. */
    assert_true(ka.fetches < kb.fetches);
    free(f);
    centre_close(&a);
    centre_close(&b);
}

/* A side whose keys do not add up to its digest (another digest definition) is refused. */
static int fetch_lying(void *arg, const char *part, const void *prefix, size_t plen,
                       struct repo_range *out)
{
    int rc = fetch_centre(arg, part, prefix, plen, out);
    out->digest ^= 1;
    return rc;
}

static void test_range_diff_refuses_inconsistent_answers(void **state)
{
    (void)state;
    struct centre a, b;
    struct found f;
    centre_open(&a, "dcA");
    centre_open(&b, "dcB");
    put(&a, "app", "1", "x", "alpha");
    memset(&f, 0, sizeof(f));
    assert_int_equal(repo_range_diff("artifacts", fetch_centre, &a, fetch_lying, &b, on_found, &f),
                     ARCA_E_INVALID);
    assert_int_equal(f.n, 0);
    centre_close(&a);
    centre_close(&b);
}

static void random_op(struct centre *c, unsigned *seed)
{
    char name[8], version[8], path[8];
    struct actor_ctx who = {c->id, NULL, NULL};
    struct op_result res = {0};
    snprintf(name, sizeof(name), "n%d", rand_r(seed) % 2);
    snprintf(version, sizeof(version), "v%d", rand_r(seed) % 3);
    snprintf(path, sizeof(path), "p%d", rand_r(seed) % 2);
    switch (rand_r(seed) % 9) {
    case 0:
    case 1:
    case 2:
        put(c, name, version, path, contents[rand_r(seed) % NCONTENTS]);
        break;
    case 3: {
        static const char *const stages[] = {"test", "prod"};
        repo_promote(c->db, "r", name, version, stages[rand_r(seed) % 2], c->id, false, &who,
                     &res);
        break;
    }
    case 4:
        if (rand_r(seed) % 3 == 0)
            repo_revoke(c->db, "r", name, version, c->id, &who, &res);
        break;
    case 5:
        if (rand_r(seed) % 4 == 0)
            repo_delete_version(c->db, "r", name, version, c->id, &who, &res);
        break;
    case 6: {
        char k[8], v[16];
        snprintf(k, sizeof(k), "k%d", rand_r(seed) % 3);
        snprintf(v, sizeof(v), "%s-%d", c->id, rand_r(seed) % 100);
        json_t *ch = json_object();
        json_object_set_new(ch, k, rand_r(seed) % 4 == 0 ? json_null() : json_string(v));
        repo_set_properties(c->db, "r", name, version, ch, &who, &res);
        json_decref(ch);
        break;
    }
    case 7: {
        char run[16];
        snprintf(run, sizeof(run), "%s-%d", c->id, rand_r(seed) % 100);
        json_t *b = json_pack("{s:s,s:s,s:s}", "pipeline", "ci", "run_id", run, "commit",
                              "abcdef0");
        repo_put_build(c->db, "r", name, version, b, &who, &res);
        json_decref(b);
        break;
    }
    case 8:
        repo_record_deployment(c->db, "prod", c->id, "r", name, version, &who, &res);
        break;
    }
    op_result_clear(&res);
}

static void full_sync(struct centre *cs, int n)
{
    for (int round = 0; round < 3; round++)
        for (int s = 0; s < n; s++)
            for (int d = 0; d < n; d++)
                if (s != d)
                    sync_log(&cs[s], &cs[d], 1, UINT64_MAX);
}

static void test_random_histories_converge(void **state)
{
    (void)state;
    for (unsigned trial = 0; trial < (getenv("ARCA_REPL_TRIALS") ? (unsigned)atoi(getenv("ARCA_REPL_TRIALS")) : 20u); trial++) {
        unsigned seed = 1000 + trial;
        struct centre cs[NCENTRES], obs[2];
        static const char *const ids[NCENTRES] = {"dc1", "dc2", "dc3"};
        for (int i = 0; i < NCENTRES; i++)
            centre_open(&cs[i], ids[i]);
        for (int step = 0; step < 120; step++) {
            random_op(&cs[rand_r(&seed) % NCENTRES], &seed);
            if (rand_r(&seed) % 5 == 0) {
                /* A partial exchange: a random prefix of one log, starting anywhere. */
                int s = rand_r(&seed) % NCENTRES, d = rand_r(&seed) % NCENTRES;
                if (s != d)
                    sync_log(&cs[s], &cs[d], 1, rand_r(&seed) % 40);
            }
        }
        full_sync(cs, NCENTRES);
        uint64_t d0 = digest_of(&cs[0]);
        for (int i = 1; i < NCENTRES; i++)
            if (digest_of(&cs[i]) != d0 && (dump(&cs[0], "/tmp/arca-repl-a.txt"),
                                             dump(&cs[i], "/tmp/arca-repl-b.txt"), 1))
                fail_msg("trial %u: %s and %s differ after a full exchange", trial, ids[0],
                         ids[i]);
        /* ...and at every range: narrowing finds no key. */
        struct found *f = malloc(sizeof(*f));
        for (int i = 1; i < NCENTRES; i++) {
            diff_all(&cs[0], &cs[i], f);
            assert_int_equal(f->n, 0);
        }
        free(f);
        /* Observers: one reads dc3's log, then dc1's twice; the other dc1's, then dc2's. */
        centre_open(&obs[0], "obs1");
        centre_open(&obs[1], "obs2");
        sync_log(&cs[2], &obs[0], 1, UINT64_MAX);
        sync_log(&cs[0], &obs[0], 1, UINT64_MAX);
        sync_log(&cs[0], &obs[0], 1, UINT64_MAX);
        sync_log(&cs[0], &obs[1], 1, UINT64_MAX);
        sync_log(&cs[1], &obs[1], 1, UINT64_MAX);
        if (digest_of(&obs[0]) != digest_of(&obs[1]))
            fail_msg("trial %u: observers fed different orders differ", trial);
        for (int i = 0; i < 2; i++)
            centre_close(&obs[i]);
        for (int i = 0; i < NCENTRES; i++)
            centre_close(&cs[i]);
    }
}

static void test_conflict_winner_and_idempotency(void **state)
{
    (void)state;
    struct centre a, b;
    centre_open(&a, "dcA");
    centre_open(&b, "dcB");
    /* b writes first (earlier HLC), then a writes the same coordinate with other bytes. */
    assert_int_equal(put(&b, "app", "1.0", "x.bin", "bravo"), 0);
    usleep(2000);
    assert_int_equal(put(&a, "app", "1.0", "x.bin", "alpha"), 0);
    sync_log(&a, &b, 1, UINT64_MAX);
    sync_log(&b, &a, 1, UINT64_MAX);
    assert_int_equal(digest_of(&a), digest_of(&b));
    struct coord co;
    struct artifact art;
    const char *why;
    struct blob_digests want;
    uint64_t sum;
    coord_set(&co, "r", "app", "1.0", "x.bin", &why);
    fixture_digests("bravo", &want, &sum);
    assert_int_equal(repo_get_artifact(a.db, &co, &art), 0);
    assert_memory_equal(art.dig.sha256, want.sha256, 32); /* the earlier write wins */
    assert_string_equal(art.origin, "dcB");
    /* The loser stays visible, in both centres' trace, with both checksums. */
    for (int i = 0; i < 2; i++) {
        json_t *t = NULL;
        char loser[65], winner[65];
        struct blob_digests ld;
        fixture_digests("alpha", &ld, &sum);
        hex_encode(ld.sha256, 32, loser);
        hex_encode(want.sha256, 32, winner);
        assert_int_equal(repo_trace_version(i ? b.db : a.db, "r", "app", "1.0", &t), 0);
        json_t *cf = json_object_get(t, "conflicts");
        assert_int_equal(json_array_size(cf), 1);
        json_t *c0 = json_array_get(cf, 0);
        assert_string_equal(json_string_value(json_object_get(c0, "sha256")), loser);
        assert_string_equal(json_string_value(json_object_get(c0, "origin")), "dcA");
        assert_string_equal(json_string_value(json_object_get(c0, "path")), "x.bin");
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(c0, "winner"), "sha256")), winner);
        json_decref(t);
    }
    /* Applying everything again changes nothing and writes no event. */
    struct repo_stats before, after;
    repo_get_stats(a.db, &before);
    sync_log(&b, &a, 1, UINT64_MAX);
    repo_get_stats(a.db, &after);
    assert_int_equal(before.event_count, after.event_count);
    /* An origin's events out of order are refused. */
    struct centre c;
    centre_open(&c, "dcC");
    put(&b, "app", "2.0", "y.bin", "charlie");
    put(&b, "app", "2.0", "z.bin", "delta");
    char *json = NULL;
    bool applied;
    struct repo_stats sb;
    repo_get_stats(b.db, &sb);
    assert_int_equal(event_read(b.db, sb.event_count, &json), 0);
    uint64_t s2;
    struct blob_blocks blocks;
    assert_int_equal(repo_apply_remote(c.db, json, strlen(json), blocks_for(json, &s2, &blocks),
                                       &applied),
                     ARCA_E_INVALID);
    free(json);
    assert_int_equal(repo_apply_remote(c.db, "{\"not\": 1}", 10, NULL, &applied),
                     ARCA_E_INVALID);
    centre_close(&a);
    centre_close(&b);
    centre_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conflict_winner_and_idempotency),
        cmocka_unit_test(test_range_digest_shape),
        cmocka_unit_test(test_range_diff_narrows_to_the_key),
        cmocka_unit_test(test_range_diff_leaf_against_buckets),
        cmocka_unit_test(test_range_diff_refuses_inconsistent_answers),
        cmocka_unit_test(test_random_histories_converge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
