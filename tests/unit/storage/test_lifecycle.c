/*
 * Unit tests for storage/lifecycle.c and trace.c against a real RocksDB:
 * promotion rules and gates, frozen files, revocation, deletion, property
 * last-writer-wins and its index, build-record subject checks, latest in a
 * stage, search scanning only index entries, and trace.
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
    struct stage_policy p;
    if (fixture_tmpdir(f->dir, sizeof(f->dir), "life") != 0 || repo_db_open(f->dir, "dc1", &f->db) != 0)
        return -1;
    stages_init_defaults(&p);
    /* test: a file; prod: a property value, a pattern and a build record. */
    p.stages[1].rules[0] = (struct gate_rule){.kind = GATE_FILE, .key = "reports/junit.xml"};
    p.stages[1].nrules = 1;
    p.stages[2].rules[0] = (struct gate_rule){.kind = GATE_PROPERTY_EQ, .key = "tests.passed",
                                              .value = "true"};
    p.stages[2].rules[1] = (struct gate_rule){.kind = GATE_PROPERTY_MATCH, .key = "ticket",
                                              .value = "CHG-[0-9]+"};
    p.stages[2].rules[2] = (struct gate_rule){.kind = GATE_BUILD};
    p.stages[2].nrules = 3;
    if (repo_set_policy(f->db, &p) != 0)
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

/* Stores content s at repo/name/version/path; returns the put's return code. */
static int put(repo_db *db, const char *name, const char *version, const char *path,
               const char *s, struct op_result *res)
{
    struct blob_digests dig;
    uint64_t sum;
    struct blob_blocks blocks = {.count = 1, .sums = &sum};
    struct coord c;
    struct artifact a;
    const char *why;
    int created;
    fixture_digests(s, &dig, &sum);
    assert_int_equal(coord_set(&c, "r", name, version, path, &why), 0);
    return repo_put_artifact_ex(db, &c, &dig, &blocks, NULL, &who, &a, &created, res);
}

static void sha_hex(const char *s, char hex[65])
{
    uint8_t d[32];
    EVP_Digest(s, strlen(s), d, NULL, EVP_sha256(), NULL);
    hex_encode(d, 32, hex);
}

static int promote(repo_db *db, const char *name, const char *to, struct op_result *res)
{
    op_result_clear(res);
    return repo_promote(db, "r", name, "1.0", to, "because", false, &who, res);
}

static void set_prop(repo_db *db, const char *name, const char *k, const char *v)
{
    struct op_result res = {0};
    json_t *ch = json_object();
    json_object_set_new(ch, k, v ? json_string(v) : json_null());
    assert_int_equal(repo_set_properties(db, "r", name, "1.0", ch, &who, &res), 0);
    json_decref(ch);
    op_result_clear(&res);
}

static json_t *native_build(void)
{
    return json_pack("{s:s,s:s,s:s}", "pipeline", "ci", "run_id", "1", "commit", "abcdef0");
}

static void test_promotion_rules_and_gates(void **state)
{
    repo_db *db = ((struct fixture *)*state)->db;
    struct op_result res = {0};
    assert_int_equal(put(db, "app", "1.0", "app.bin", "app", NULL), 0);
    assert_int_equal(promote(db, "app", "prod", &res), ARCA_E_CONFLICT);
    assert_string_equal(res.code, "stage_skip");
    assert_int_equal(promote(db, "app", "qa", &res), ARCA_E_INVALID);
    assert_string_equal(res.code, "unknown_stage");
    assert_int_equal(promote(db, "app", "test", &res), ARCA_E_PRECONDITION);
    assert_int_equal(json_array_size(json_object_get(res.detail, "unmet")), 1);
    assert_int_equal(put(db, "app", "1.0", "reports/junit.xml", "<ok/>", NULL), 0);
    assert_int_equal(promote(db, "app", "test", &res), 0);
    assert_true(res.changed);
    assert_string_equal(res.state.stage, "test");
    uint64_t seq = res.seq;
    assert_int_equal(promote(db, "app", "test", &res), 0);
    assert_false(res.changed);
    assert_int_equal(promote(db, "app", "dev", &res), ARCA_E_CONFLICT);
    assert_string_equal(res.code, "stage_backwards");
    /* Frozen: no new file, but the same file again is a safe retry. */
    assert_int_equal(put(db, "app", "1.0", "late.bin", "late", &res), ARCA_E_CONFLICT);
    assert_string_equal(res.code, "version_frozen");
    assert_int_equal(put(db, "app", "1.0", "app.bin", "app", NULL), 0);

    /* prod: all three gates unmet, then each alone. */
    assert_int_equal(promote(db, "app", "prod", &res), ARCA_E_PRECONDITION);
    assert_int_equal(json_array_size(json_object_get(res.detail, "unmet")), 3);
    set_prop(db, "app", "tests.passed", "true");
    set_prop(db, "app", "ticket", "CHG-12x"); /* the pattern must match the whole value */
    struct op_result b = {0};
    json_t *rec = native_build();
    assert_int_equal(repo_put_build(db, "r", "app", "1.0", rec, &who, &b), 0);
    json_decref(rec);
    op_result_clear(&b);
    assert_int_equal(promote(db, "app", "prod", &res), ARCA_E_PRECONDITION);
    json_t *unmet = json_object_get(res.detail, "unmet");
    assert_int_equal(json_array_size(unmet), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(unmet, 0), "key")),
                        "ticket");
    set_prop(db, "app", "ticket", "CHG-12");
    assert_int_equal(promote(db, "app", "prod", &res), 0);
    assert_true(res.seq > seq);
    char v[COORD_SEGMENT_MAX + 1];
    assert_int_equal(repo_latest_in_stage(db, "r", "app", "prod", v), 0);
    assert_string_equal(v, "1.0");
    /* Never deletable once promoted. */
    op_result_clear(&res);
    assert_int_equal(repo_delete_version(db, "r", "app", "1.0", NULL, &who, &res),
                     ARCA_E_CONFLICT);
    assert_string_equal(res.code, "version_promoted");
    /* Revocation wins: latest no longer resolves; promotion refused. */
    op_result_clear(&res);
    assert_int_equal(repo_revoke(db, "r", "app", "1.0", "bad", &who, &res), 0);
    assert_int_equal(repo_latest_in_stage(db, "r", "app", "prod", v), ARCA_E_NOTFOUND);
    /* Every file record carries the revocation, so a download needs no second lookup. */
    struct coord fc;
    struct artifact fa;
    const char *why;
    assert_int_equal(coord_set(&fc, "r", "app", "1.0", "reports/junit.xml", &why), 0);
    assert_int_equal(repo_get_artifact(db, &fc, &fa), 0);
    assert_true(fa.revoked);
    op_result_clear(&res);
    assert_int_equal(repo_revoke(db, "r", "app", "1.0", "again", &who, &res), 0);
    assert_false(res.changed);
    assert_string_equal(res.state.revoke_reason, "bad");
    op_result_clear(&res);
}

struct promo_arg {
    repo_db *db;
    int changed;
};

static void *promote_thread(void *arg)
{
    struct promo_arg *a = arg;
    struct op_result res = {0};
    if (repo_promote(a->db, "r", "race", "1.0", "test", "", false, &who, &res) == 0 &&
        res.changed)
        __atomic_add_fetch(&a->changed, 1, __ATOMIC_SEQ_CST);
    op_result_clear(&res);
    return NULL;
}

static int count_promotions(void *arg, json_t *ev)
{
    if (strcmp(json_string_value(json_object_get(ev, "action")), "version.promote") == 0)
        (*(int *)arg)++;
    json_decref(ev);
    return 0;
}

static void test_concurrent_promotions(void **state)
{
    repo_db *db = ((struct fixture *)*state)->db;
    pthread_t t[8];
    struct promo_arg a = {db, 0};
    assert_int_equal(put(db, "race", "1.0", "reports/junit.xml", "x", NULL), 0);
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, promote_thread, &a);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(a.changed, 1);
    int n = 0;
    char next[REPO_CURSOR_MAX];
    assert_int_equal(repo_version_history(db, "r", "race", "1.0", NULL, 100, count_promotions,
                                          &n, next),
                     0);
    assert_int_equal(n, 1);
}

static int collect_hit(void *arg, json_t *item)
{
    json_array_append_new(arg, item);
    return 1;
}

static void test_properties_index_and_delete(void **state)
{
    repo_db *db = ((struct fixture *)*state)->db;
    struct op_result res = {0};
    char next[REPO_CURSOR_MAX];
    uint64_t scanned;
    for (int i = 0; i < 50; i++) {
        char name[16], content[16];
        snprintf(name, sizeof(name), "n%02d", i);
        snprintf(content, sizeof(content), "c%02d", i);
        assert_int_equal(put(db, name, "1.0", "f", content, NULL), 0);
        set_prop(db, name, "team", i % 10 == 0 ? "red" : "blue");
    }
    struct search_query q = {.prop_key = "team", .prop_value = "red"};
    json_t *hits = json_array();
    assert_int_equal(repo_search(db, &q, NULL, 100, collect_hit, hits, next, &scanned), 0);
    assert_int_equal(json_array_size(hits), 5);
    assert_int_equal(scanned, 5); /* the index, not 50 versions */
    json_decref(hits);
    /* Changing a value moves its index entry. */
    set_prop(db, "n10", "team", "blue");
    set_prop(db, "n20", "team", NULL);
    hits = json_array();
    assert_int_equal(repo_search(db, &q, NULL, 100, collect_hit, hits, next, &scanned), 0);
    assert_int_equal(json_array_size(hits), 3);
    json_decref(hits);
    /* Deleting a version in the first stage: files gone, tombstone kept, index cleared. */
    struct repo_stats before, after;
    repo_get_stats(db, &before);
    assert_int_equal(repo_delete_version(db, "r", "n00", "1.0", "oops", &who, &res), 0);
    assert_true(res.state.deleted_ms > 0);
    repo_get_stats(db, &after);
    assert_int_equal(after.artifact_count, before.artifact_count - 1);
    assert_int_equal(after.logical_bytes, before.logical_bytes - 3);
    hits = json_array();
    assert_int_equal(repo_search(db, &q, NULL, 100, collect_hit, hits, next, &scanned), 0);
    assert_int_equal(json_array_size(hits), 2);
    json_decref(hits);
    op_result_clear(&res);
    assert_int_equal(put(db, "n00", "1.0", "f", "c00", &res), ARCA_E_CONFLICT);
    assert_string_equal(res.code, "version_deleted");
    op_result_clear(&res);
    /* Search by checksum reads the content references only. */
    uint8_t sha[32];
    EVP_Digest("c05", 3, sha, NULL, EVP_sha256(), NULL);
    struct search_query qc = {.sha256 = sha};
    hits = json_array();
    assert_int_equal(repo_search(db, &qc, NULL, 100, collect_hit, hits, next, &scanned), 0);
    assert_int_equal(json_array_size(hits), 1);
    assert_int_equal(scanned, 1);
    json_decref(hits);
}

static json_t *statement(const char *name, const char *sha)
{
    return json_pack("{s:s,s:[{s:s,s:{s:s}}],s:s,s:{s:{s:s},s:{s:{s:s}}}}", "_type",
                     "https://in-toto.io/Statement/v1", "subject", "name", name, "digest",
                     "sha256", sha, "predicateType", "https://slsa.dev/provenance/v1",
                     "predicate", "buildDefinition", "buildType", "x", "runDetails", "builder",
                     "id", "b");
}

static void test_build_subjects_and_trace(void **state)
{
    repo_db *db = ((struct fixture *)*state)->db;
    struct op_result res = {0};
    char h[65], other[65];
    assert_int_equal(put(db, "b", "1.0", "app.bin", "payload", NULL), 0);
    assert_int_equal(put(db, "copy", "1.0", "renamed.bin", "payload", NULL), 0);
    sha_hex("payload", h);
    sha_hex("something else", other);
    json_t *st = statement("app.bin", other);
    assert_int_equal(repo_put_build(db, "r", "b", "1.0", st, &who, &res), ARCA_E_INVALID);
    assert_string_equal(res.code, "subject_mismatch");
    json_decref(st);
    op_result_clear(&res);
    st = statement("unknown.bin", other);
    assert_int_equal(repo_put_build(db, "r", "b", "1.0", st, &who, &res), ARCA_E_INVALID);
    json_decref(st);
    op_result_clear(&res);
    st = statement("app.bin", h);
    assert_int_equal(repo_put_build(db, "r", "b", "1.0", st, &who, &res), 0);
    assert_true(res.changed);
    json_decref(st);
    op_result_clear(&res);

    uint8_t sha[32];
    EVP_Digest("payload", 7, sha, NULL, EVP_sha256(), NULL);
    json_t *t = NULL;
    assert_int_equal(repo_trace_sha256(db, sha, &t), 0);
    json_t *coords = json_object_get(t, "coordinates");
    assert_int_equal(json_array_size(coords), 2);
    json_t *first = json_array_get(coords, 0);
    assert_string_equal(json_string_value(json_object_get(first, "name")), "b");
    json_t *build = json_object_get(json_object_get(first, "trace"), "build");
    assert_string_equal(json_string_value(json_object_get(build, "format")),
                        "slsa-provenance-v1");
    assert_true(json_is_null(json_object_get(json_object_get(json_array_get(coords, 1),
                                                             "trace"), "build")));
    json_decref(t);
    assert_int_equal(repo_trace_sha256(db, (const uint8_t *)"0123456789abcdef0123456789abcdef",
                                       &t),
                     ARCA_E_NOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_promotion_rules_and_gates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_promotions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_properties_index_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_subjects_and_trace, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
