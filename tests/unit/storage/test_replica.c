/*
 * Replication's merge rules, as a property test over real RocksDB indexes:
 * three centres make random local changes (uploads with clashing bytes,
 * promotions, revocations, deletions, property and build-record writes,
 * deployments) and exchange their logs in random partial steps; once every
 * log has reached every centre, all state digests are equal.  Fresh
 * observers fed the logs in different orders, and fed them twice, end with
 * the same digest too.  Also: the conflict winner rule on a fixed case,
 * idempotency, and refusal of an origin's events out of order.
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
    for (int i = 0; i < NCONTENTS; i++) {
        struct blob_digests dig;
        char hex[65];
        fixture_digests(contents[i], &dig, sum);
        hex_encode(dig.sha256, 32, hex);
        if (strstr(event, hex)) {
            blocks->count = 1;
            blocks->sums = sum;
            return blocks;
        }
    }
    return NULL;
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
        cmocka_unit_test(test_random_histories_converge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
