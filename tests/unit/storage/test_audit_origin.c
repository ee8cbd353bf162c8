/*
 * Per-origin Merkle trees and origin checkpoints (storage/audit.h) across two
 * real centres, each a RocksDB index in a temporary directory with its own
 * Ed25519 key, exchanging their logs through repo_apply_remote as
 * replication does: each origin's tree has the same roots at both (and the
 * roots of a naive RFC 6962 recomputation from the origin-canonical records),
 * checkpoints are accepted, pinned on first sight, refused when signed by
 * another key, with a bad signature or a root that differs; verify names a
 * tampered event by origin and origin_seq, and catches a history rewritten
 * with every local hash recomputed; a data directory from before per-origin
 * trees is migrated on open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "arca_err.h"
#include "audit.h"
#include "audit_int.h"
#include "fixture.h"
#include "rfc6962_ref.h"
#include "repo.h"
#include "repo_int.h"
#include "replica.h"
#include "token.h"
#include "util.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- centres ------------------------------------------------------------------------ */

struct centre {
    char dir[64];
    char index[96];
    char id[8];
    repo_db *db;
    audit_signer *signer;
    uint64_t made;
};

#define CONTENTS_MAX 256
static char contents[CONTENTS_MAX][48];
static size_t ncontents;

static void centre_open(struct centre *c, const char *id)
{
    int created = 0;
    memset(c, 0, sizeof(*c));
    assert_int_equal(fixture_tmpdir(c->dir, sizeof(c->dir), "olog"), 0);
    snprintf(c->index, sizeof(c->index), "%s/index", c->dir);
    snprintf(c->id, sizeof(c->id), "%s", id);
    assert_int_equal(repo_db_open(c->index, id, &c->db), 0);
    assert_int_equal(audit_signer_open(c->dir, true, &c->signer, &created), 0);
    assert_int_equal(created, 1);
}

static void centre_reopen(struct centre *c)
{
    repo_db_free(c->db);
    c->db = NULL;
    assert_int_equal(repo_db_open(c->index, c->id, &c->db), 0);
}

static void centre_close(struct centre *c)
{
    repo_db_free(c->db);
    audit_signer_free(c->signer);
    fixture_rmtree(c->dir);
}

/* n local events at c: uploads, and every third an auth failure. */
static void add_local(struct centre *c, int n)
{
    for (int i = 0; i < n; i++) {
        uint64_t k = ++c->made;
        struct actor_ctx who = {c->id, "10.0.0.1:4000", "req-x"};
        if (k % 3 == 0) {
            assert_int_equal(repo_auth_failure(c->db, &who, "bad token", NULL), 0);
            continue;
        }
        struct blob_digests dig;
        struct blob_blocks blocks;
        struct artifact a;
        struct coord co;
        const char *why;
        char version[24], path[48];
        uint64_t sum;
        int created = 0;
        assert_true(ncontents < CONTENTS_MAX);
        char *content = contents[ncontents++];
        snprintf(content, sizeof(contents[0]), "%s content %llu", c->id, (unsigned long long)k);
        snprintf(version, sizeof(version), "%llu", (unsigned long long)k / 4);
        snprintf(path, sizeof(path), "%s-%llu.bin", c->id, (unsigned long long)k);
        fixture_digests(content, &dig, &sum);
        blocks.count = 1;
        blocks.sums = &sum;
        assert_int_equal(coord_set(&co, "libs", "app", version, path, &why), 0);
        assert_int_equal(repo_put_artifact(c->db, &co, &dig, &blocks, &who, &a, &created), 0);
        assert_int_equal(created, 1);
    }
}

/* The block sums for the content an event names (the replicator computes them on arrival). */
static const struct blob_blocks *blocks_for(const char *event, uint64_t *sum,
                                            struct blob_blocks *blocks)
{
    const struct blob_blocks *b = NULL;
    for (size_t i = 0; i < ncontents && !b; i++)
        b = fixture_blocks_of(event, contents[i], sum, blocks);
    return b;
}

static uint64_t log_size(repo_db *db)
{
    struct repo_stats st;
    assert_int_equal(repo_get_stats(db, &st), 0);
    return st.event_count;
}

/* Feeds dst every event of src's log (already applied ones are skipped, as replication does). */
static void sync_log(struct centre *src, struct centre *dst)
{
    uint64_t n = log_size(src->db);
    for (uint64_t seq = 1; seq <= n; seq++) {
        char *json = NULL;
        uint64_t sum;
        struct blob_blocks blocks;
        bool applied = false;
        assert_int_equal(event_read(src->db, seq, &json), 0);
        int rc = repo_apply_remote(dst->db, json, strlen(json), blocks_for(json, &sum, &blocks),
                                   &applied);
        if (rc != 0)
            fail_msg("apply %s -> %s seq %llu: %d", src->id, dst->id, (unsigned long long)seq,
                     rc);
        free(json);
    }
}

/* The local seq at which db holds origin's event origin_seq (0: none). */
static uint64_t local_seq_of(repo_db *db, const char *origin, uint64_t origin_seq)
{
    uint64_t n = log_size(db);
    for (uint64_t seq = 1; seq <= n; seq++) {
        char *json = NULL;
        assert_int_equal(event_read(db, seq, &json), 0);
        json_t *o = json_loads(json, 0, NULL);
        bool hit = strcmp(json_string_value(json_object_get(o, "origin")), origin) == 0 &&
                   (uint64_t)json_integer_value(json_object_get(o, "origin_seq")) == origin_seq;
        json_decref(o);
        free(json);
        if (hit)
            return seq;
    }
    return 0;
}

/* ---- an independent RFC 6962 recomputation: rfc6962_ref.h ------------------------- */

/*
 * The leaves of origin's events as db's log holds them, in origin_seq order:
 * SHA-256(0x00 || the record without seq, prev and hash, compact and sorted).
 */
static uint64_t origin_leaves(repo_db *db, const char *origin, uint8_t (*leaves)[32])
{
    uint64_t n = log_size(db), count = 0;
    for (uint64_t seq = 1; seq <= n; seq++) {
        char *json = NULL;
        assert_int_equal(event_read(db, seq, &json), 0);
        json_t *o = json_loads(json, 0, NULL);
        if (strcmp(json_string_value(json_object_get(o, "origin")), origin) == 0) {
            assert_int_equal(json_integer_value(json_object_get(o, "origin_seq")), count + 1);
            json_object_del(o, "seq");
            json_object_del(o, "prev");
            json_object_del(o, "hash");
            char *canon = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
            sha("\0", 1, canon, strlen(canon), NULL, 0, leaves[count++]);
            free(canon);
        }
        json_decref(o);
        free(json);
    }
    return count;
}

/* ---- helpers for checkpoints and reports -------------------------------------------- */

/* Element i of c's GET /api/v1/audit/origins/checkpoints body (a new reference). */
static json_t *checkpoint_of(struct centre *c, size_t i)
{
    json_t *arr = NULL;
    assert_int_equal(audit_origin_checkpoints(c->db, c->signer, &arr), 0);
    assert_true(json_is_array(arr));
    json_t *el = json_incref(json_array_get(arr, i));
    assert_non_null(el);
    json_decref(arr);
    return el;
}

/* origin's entry of c's GET /api/v1/audit/origins body (a new reference). */
static json_t *status_of(struct centre *c, const char *origin)
{
    json_t *body = NULL, *found = NULL, *el;
    size_t i;
    assert_int_equal(audit_origins(c->db, &body), 0);
    assert_string_equal(json_string_value(json_object_get(body, "centre")), c->id);
    json_array_foreach(json_object_get(body, "origins"), i, el)
        if (strcmp(json_string_value(json_object_get(el, "origin")), origin) == 0)
            found = json_incref(el);
    json_decref(body);
    assert_non_null(found);
    return found;
}

/* A checkpoint's JSON with its fields changed and signed again by s (another key, or a fork). */
static json_t *resign(json_t *cpj, const audit_signer *s, const uint8_t *root, uint64_t size)
{
    struct audit_checkpoint cp;
    const char *why = NULL;
    char *text = json_dumps(cpj, JSON_COMPACT);
    assert_int_equal(audit_checkpoint_parse(text, strlen(text), &cp, &why), 0);
    free(text);
    if (root)
        memcpy(cp.root, root, 32);
    if (size != UINT64_MAX)
        cp.size = size;
    assert_int_equal(checkpoint_sign(s, &cp), 0);
    return audit_checkpoint_json(&cp);
}

static const struct audit_origin_result *report_origin(const struct audit_report *rep,
                                                       const char *origin)
{
    for (size_t i = 0; i < rep->norigins; i++)
        if (strcmp(rep->origins[i].origin, origin) == 0)
            return &rep->origins[i];
    fail_msg("origin %s is not in the report", origin);
    return NULL;
}

static void print_problems(const struct audit_report *rep)
{
    for (size_t i = 0; i < rep->nproblems; i++)
        print_message("problem %zu: seq %llu %s origin '%s' #%llu: %s\n", i,
                      (unsigned long long)rep->problems[i].seq, rep->problems[i].kind,
                      rep->problems[i].origin, (unsigned long long)rep->problems[i].origin_seq,
                      rep->problems[i].message);
}

static void verify_ok(repo_db *db, struct audit_report *rep)
{
    assert_int_equal(audit_verify(db, NULL, NULL, rep), 0);
    if (!rep->ok)
        print_problems(rep);
    assert_true(rep->ok);
    json_t *j = audit_report_json(rep, NULL);
    assert_non_null(j);
    json_decref(j);
}

/* ---- two centres ------------------------------------------------------------------- */

struct pair {
    struct centre a, b;
};

static int setup(void **state)
{
    struct pair *p = calloc(1, sizeof(*p));
    centre_open(&p->a, "dc1");
    centre_open(&p->b, "dc2");
    ncontents = 0;
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    struct pair *p = *state;
    centre_close(&p->a);
    centre_close(&p->b);
    free(p);
    return 0;
}

static void test_roots_equal_across_centres(void **state)
{
    struct pair *p = *state;
    struct audit_report rep;
    static uint8_t la[64][32], lb[64][32];
    uint8_t ra[32], rb[32], want[32];
    add_local(&p->a, 11);
    add_local(&p->b, 7);
    sync_log(&p->a, &p->b);
    sync_log(&p->b, &p->a);
    add_local(&p->a, 5);
    add_local(&p->b, 2);
    sync_log(&p->a, &p->b);
    sync_log(&p->b, &p->a);
    assert_int_equal(log_size(p->a.db), 25);
    assert_int_equal(log_size(p->b.db), 25);

    static const struct {
        const char *origin;
        uint64_t n;
    } origins[] = {{"dc1", 16}, {"dc2", 9}};
    for (size_t o = 0; o < 2; o++) {
        const char *origin = origins[o].origin;
        uint64_t n = origins[o].n, sa = 0, sb = 0;
        assert_int_equal(audit_origin_size(p->a.db, origin, &sa), 0);
        assert_int_equal(audit_origin_size(p->b.db, origin, &sb), 0);
        assert_int_equal(sa, n);
        assert_int_equal(sb, n);
        /* The same leaves from both logs, though each numbers the events its own way. */
        assert_int_equal(origin_leaves(p->a.db, origin, la), n);
        assert_int_equal(origin_leaves(p->b.db, origin, lb), n);
        assert_memory_equal(la, lb, n * 32);
        for (uint64_t size = 0; size <= n; size++) {
            assert_int_equal(audit_origin_root(p->a.db, origin, size, ra), 0);
            assert_int_equal(audit_origin_root(p->b.db, origin, size, rb), 0);
            mth(la, size, want);
            assert_memory_equal(ra, want, 32);
            assert_memory_equal(rb, want, 32);
        }
        assert_int_equal(audit_origin_root(p->a.db, origin, n + 1, ra), ARCA_E_NOTFOUND);
        /* Proofs from B check against A's roots. */
        for (uint64_t size = 1; size <= n; size += 3)
            for (uint64_t s = 1; s <= size; s++) {
                uint8_t path[AUDIT_PROOF_MAX][32], leaf[32];
                size_t np = 0;
                assert_int_equal(
                    audit_origin_inclusion_proof(p->b.db, origin, s, size, path, &np, rb), 0);
                assert_int_equal(audit_origin_leaf_hash(p->b.db, origin, s, leaf), 0);
                assert_memory_equal(leaf, la[s - 1], 32);
                assert_int_equal(audit_origin_root(p->a.db, origin, size, ra), 0);
                assert_true(inclusion_ok(s - 1, size, leaf, path, np, ra));
            }
        uint8_t proof[AUDIT_PROOF_MAX][32], r1[32], r2[32];
        size_t np = 0;
        assert_int_equal(audit_origin_consistency_proof(p->b.db, origin, 3, n, proof, &np, r1, r2),
                         0);
        mth(la, 3, want);
        assert_memory_equal(r1, want, 32);
        assert_true(np > 0);
    }
    /* The local trees differ (each log is in its own order); the origins' do not. */
    assert_int_equal(audit_root(p->a.db, 25, ra), 0);
    assert_int_equal(audit_root(p->b.db, 25, rb), 0);
    assert_memory_not_equal(ra, rb, 32);
    uint64_t none = 0;
    assert_int_equal(audit_origin_size(p->a.db, "", &none), ARCA_E_INVALID);

    /* The canonical form drops exactly seq, prev and hash. */
    char *json = NULL, *canon = NULL, origin[AUDIT_ORIGIN_MAX + 1];
    uint64_t oseq = 0;
    assert_int_equal(event_read(p->b.db, 3, &json), 0);
    assert_int_equal(audit_origin_canonical(json, strlen(json), &canon, origin, &oseq), 0);
    assert_null(strstr(canon, "\"seq\""));
    assert_null(strstr(canon, "\"prev\""));
    assert_null(strstr(canon, "\"hash\""));
    assert_non_null(strstr(canon, "\"origin_seq\""));
    free(canon);
    free(json);
    assert_int_equal(audit_origin_canonical("[1]", 3, &canon, origin, &oseq), ARCA_E_INVALID);
    assert_int_equal(audit_origin_canonical("{\"origin\":\"x\",\"origin_seq\":0}", 29, &canon,
                                            origin, &oseq), ARCA_E_INVALID);

    for (int c = 0; c < 2; c++) {
        verify_ok(c ? p->b.db : p->a.db, &rep);
        assert_int_equal(rep.origin_count, 2);
        const struct audit_origin_result *r = report_origin(&rep, "dc1");
        assert_int_equal(r->events, 16);
        assert_true(r->root_known);
        assert_int_equal(audit_origin_root(p->a.db, "dc1", 16, ra), 0);
        assert_memory_equal(r->root, ra, 32);
        assert_false(r->checkpoint);
        assert_int_equal(r->verified, -1);
    }
}

static void test_checkpoint_exchange(void **state)
{
    struct pair *p = *state;
    struct audit_checkpoint cp;
    struct audit_report rep;
    const char *w = NULL;
    char why[256], text[512];
    uint8_t root[32];
    add_local(&p->a, 9);
    sync_log(&p->a, &p->b);

    /* A's own checkpoint: of its origin's tree, signed, first in its list. */
    json_t *cpa = checkpoint_of(&p->a, 0), *arr = NULL;
    assert_int_equal(audit_origin_checkpoints(p->a.db, p->a.signer, &arr), 0);
    assert_int_equal(json_array_size(arr), 1);
    json_decref(arr);
    assert_string_equal(json_string_value(json_object_get(cpa, "tree")), "origin");
    assert_string_equal(json_string_value(json_object_get(cpa, "origin")), "dc1");
    assert_int_equal(json_integer_value(json_object_get(cpa, "size")), 9);
    char *s = json_dumps(cpa, JSON_COMPACT);
    assert_int_equal(audit_checkpoint_parse(s, strlen(s), &cp, &w), 0);
    free(s);
    assert_int_equal(cp.tree, AUDIT_TREE_ORIGIN);
    assert_true(audit_checkpoint_signature_ok(&cp));
    assert_int_equal(audit_origin_root(p->a.db, "dc1", 9, root), 0);
    assert_memory_equal(cp.root, root, 32);
    assert_true(audit_checkpoint_text(&cp, text, sizeof(text)) > 0);
    assert_memory_equal(text, "arca-origin-checkpoint/v1\ndc1\n9\n", 32);
    /* The same fields as a local checkpoint sign different text: one cannot pass for the other. */
    cp.tree = AUDIT_TREE_LOCAL;
    assert_false(audit_checkpoint_signature_ok(&cp));

    /* B holds all 9: accepted, pinned, verified; B now serves it after its own. */
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, cpa, why, sizeof(why)), 0);
    json_t *st = status_of(&p->b, "dc1");
    assert_true(json_is_true(json_object_get(st, "verified")));
    assert_null(json_object_get(st, "reason"));
    assert_false(json_is_true(json_object_get(st, "self")));
    assert_int_equal(json_integer_value(json_object_get(st, "events")), 9);
    assert_string_equal(json_string_value(json_object_get(st, "key_id")),
                        json_string_value(json_object_get(cpa, "key_id")));
    json_t *c = json_object_get(st, "checkpoint");
    assert_int_equal(json_integer_value(json_object_get(c, "size")), 9);
    assert_string_equal(json_string_value(json_object_get(c, "root")),
                        json_string_value(json_object_get(cpa, "root")));
    json_decref(st);
    st = status_of(&p->b, "dc2");
    assert_true(json_is_true(json_object_get(st, "self")));
    assert_true(json_is_null(json_object_get(st, "verified")));
    json_decref(st);
    assert_int_equal(audit_origin_checkpoints(p->b.db, p->b.signer, &arr), 0);
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "origin")),
                        "dc2");
    assert_true(json_equal(json_array_get(arr, 1), cpa));
    /* A ignores its own (relayed back) and accepts B's empty history. */
    assert_int_equal(audit_origin_checkpoint_accept(p->a.db, json_array_get(arr, 1), why,
                                                    sizeof(why)), 0);
    assert_int_equal(audit_origin_checkpoint_accept(p->a.db, json_array_get(arr, 0), why,
                                                    sizeof(why)), 0);
    json_decref(arr);
    st = status_of(&p->a, "dc1");
    assert_true(json_is_null(json_object_get(st, "checkpoint")));
    json_decref(st);
    st = status_of(&p->a, "dc2");
    assert_true(json_is_true(json_object_get(st, "verified")));
    assert_int_equal(json_integer_value(json_object_get(st, "events")), 0);
    json_decref(st);

    /* A checkpoint ahead of what B holds: kept, unknown, then checked when the events come. */
    add_local(&p->a, 4);
    json_t *cpa2 = checkpoint_of(&p->a, 0);
    assert_int_equal(json_integer_value(json_object_get(cpa2, "size")), 13);
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, cpa2, why, sizeof(why)), 0);
    st = status_of(&p->b, "dc1");
    assert_true(json_is_null(json_object_get(st, "verified")));
    assert_non_null(strstr(json_string_value(json_object_get(st, "reason")), "9 of the 13"));
    json_decref(st);
    assert_int_equal(audit_verify(p->b.db, NULL, NULL, &rep), 0);
    assert_true(rep.ok);
    assert_int_equal(report_origin(&rep, "dc1")->verified, -1);
    assert_int_equal(report_origin(&rep, "dc1")->cp_size, 13);
    sync_log(&p->a, &p->b);
    st = status_of(&p->b, "dc1");
    assert_true(json_is_true(json_object_get(st, "verified")));
    json_decref(st);
    verify_ok(p->b.db, &rep);
    assert_int_equal(report_origin(&rep, "dc1")->verified, 1);
    assert_int_equal(report_origin(&rep, "dc2")->verified, -1);

    /* Older ones are still checked and accepted, but do not replace the newer one. */
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, cpa, why, sizeof(why)), 0);
    st = status_of(&p->b, "dc1");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "checkpoint"),
                                                        "size")), 13);
    json_decref(st);
    json_decref(cpa2);
    json_decref(cpa);
}

static void test_checkpoint_other_key_refused(void **state)
{
    struct pair *p = *state;
    struct centre c, other;
    char why[256] = "";
    add_local(&p->a, 5);
    sync_log(&p->a, &p->b);
    json_t *real = checkpoint_of(&p->a, 0);
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, real, why, sizeof(why)), 0);

    /* The same tree, signed by a key that is not dc1's: a valid signature, the wrong key. */
    centre_open(&other, "dc9");
    json_t *forged = resign(real, other.signer, NULL, UINT64_MAX);
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, forged, why, sizeof(why)),
                     ARCA_E_CONFLICT);
    assert_non_null(strstr(why, "pinned"));
    assert_non_null(strstr(why, json_string_value(json_object_get(forged, "key_id"))));
    json_t *st = status_of(&p->b, "dc1");
    assert_string_equal(json_string_value(json_object_get(st, "key_id")),
                        json_string_value(json_object_get(real, "key_id")));
    json_decref(st);

    /* Trust on first use: a centre that saw the other key first pins that one. */
    centre_open(&c, "dc3");
    sync_log(&p->a, &c);
    assert_int_equal(audit_origin_checkpoint_accept(c.db, forged, why, sizeof(why)), 0);
    assert_int_equal(audit_origin_checkpoint_accept(c.db, real, why, sizeof(why)),
                     ARCA_E_CONFLICT);
    centre_close(&c);
    centre_close(&other);
    json_decref(forged);
    json_decref(real);
}

static void test_checkpoint_root_conflict(void **state)
{
    struct pair *p = *state;
    char why[256] = "";
    uint8_t bad[32];
    add_local(&p->a, 6);
    sync_log(&p->a, &p->b);
    json_t *real = checkpoint_of(&p->a, 0);

    /* Signed by dc1's own key, but not the history B holds: B's copy differs. */
    memset(bad, 0x5a, sizeof(bad));
    json_t *fork = resign(real, p->a.signer, bad, UINT64_MAX);
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, fork, why, sizeof(why)),
                     ARCA_E_CONFLICT);
    assert_non_null(strstr(why, "differs here"));
    /* Refused before any pin: the genuine one is pinned afterwards. */
    json_t *st = status_of(&p->b, "dc1");
    assert_true(json_is_null(json_object_get(st, "checkpoint")));
    json_decref(st);
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, real, why, sizeof(why)), 0);

    /* Beyond what B holds, the origin signing two roots for one size is a fork. */
    add_local(&p->a, 3);
    json_t *real9 = checkpoint_of(&p->a, 0);
    json_t *fork9 = resign(real9, p->a.signer, bad, UINT64_MAX);
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, real9, why, sizeof(why)), 0);
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, fork9, why, sizeof(why)),
                     ARCA_E_CONFLICT);
    assert_non_null(strstr(why, "already signed"));
    /* A fork B cannot check yet is kept and caught when the events arrive. */
    json_t *fork12 = resign(real9, p->a.signer, bad, 12);
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, fork12, why, sizeof(why)), 0);
    add_local(&p->a, 3);
    sync_log(&p->a, &p->b); /* apply logs the mismatch; the events still land */
    assert_int_equal(log_size(p->b.db), 12);
    st = status_of(&p->b, "dc1");
    assert_true(json_is_false(json_object_get(st, "verified")));
    assert_non_null(strstr(json_string_value(json_object_get(st, "reason")), "differs here"));
    json_decref(st);
    struct audit_report rep;
    assert_int_equal(audit_verify(p->b.db, NULL, NULL, &rep), 0);
    assert_false(rep.ok);
    assert_int_equal(rep.problem_count, 1);
    assert_string_equal(rep.problems[0].kind, "origin");
    assert_string_equal(rep.problems[0].origin, "dc1");
    assert_int_equal(report_origin(&rep, "dc1")->verified, 0);
    json_decref(fork12);
    json_decref(fork9);
    json_decref(real9);
    json_decref(fork);
    json_decref(real);
}

static void test_checkpoint_invalid(void **state)
{
    struct pair *p = *state;
    char why[256] = "";
    add_local(&p->a, 4);
    sync_log(&p->a, &p->b);
    json_t *real = checkpoint_of(&p->a, 0);

    /* A field changed after signing: the signature no longer verifies. */
    json_t *tampered = json_deep_copy(real);
    json_object_set_new(tampered, "size", json_integer(3));
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, tampered, why, sizeof(why)),
                     ARCA_E_INVALID);
    assert_non_null(strstr(why, "signature"));
    json_decref(tampered);
    tampered = json_deep_copy(real);
    json_object_set_new(tampered, "origin", json_string("dc7"));
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, tampered, why, sizeof(why)),
                     ARCA_E_INVALID);
    json_decref(tampered);

    /* Malformed ones say what is wrong. */
    json_t *bad = json_pack("{s:s}", "origin", "dc1");
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, bad, why, sizeof(why)),
                     ARCA_E_INVALID);
    assert_true(why[0] != '\0');
    json_decref(bad);
    bad = json_integer(7);
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, bad, why, sizeof(why)),
                     ARCA_E_INVALID);
    assert_non_null(strstr(why, "object"));
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, NULL, NULL, 0), ARCA_E_INVALID);
    json_decref(bad);
    bad = json_deep_copy(real);
    json_object_set_new(bad, "tree", json_string("local"));
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, bad, why, sizeof(why)),
                     ARCA_E_INVALID);
    assert_non_null(strstr(why, "tree"));
    json_decref(bad);
    /* A checkpoint of A's local log is not one of its origin's tree. */
    struct audit_checkpoint local;
    assert_int_equal(audit_checkpoint_make(p->a.db, p->a.signer, UINT64_MAX, &local), 0);
    bad = audit_checkpoint_json(&local);
    assert_null(json_object_get(bad, "tree"));
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, bad, why, sizeof(why)),
                     ARCA_E_INVALID);
    assert_non_null(strstr(why, "not an origin checkpoint"));
    json_decref(bad);

    /* None of it was kept. */
    json_t *st = status_of(&p->b, "dc1");
    assert_true(json_is_null(json_object_get(st, "checkpoint")));
    assert_true(json_is_null(json_object_get(st, "key_id")));
    json_decref(st);
    json_decref(real);
}

/* Changes one character of the first string value inside an event's details. */
static void alter_event(repo_db *db, uint64_t seq)
{
    char *text = NULL, *err = NULL;
    uint8_t key[8];
    assert_int_equal(event_read(db, seq, &text), 0);
    char *d = strstr(text, "\"details\":{");
    assert_non_null(d);
    char *v = strstr(d, ":\"");
    assert_non_null(v);
    v[2] = v[2] == 'a' ? 'b' : 'a';
    put_be64(key, seq);
    rocksdb_put_cf(db->db, db->wopts, db->cf[CF_EVENTS], (const char *)key, 8, text, strlen(text),
                   &err);
    assert_null(err);
    free(text);
}

static void test_tampered_event_named(void **state)
{
    struct pair *p = *state;
    struct audit_report rep;
    char why[256] = "";
    add_local(&p->b, 2);
    add_local(&p->a, 10);
    sync_log(&p->a, &p->b);
    json_t *real = checkpoint_of(&p->a, 0);
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, real, why, sizeof(why)), 0);
    verify_ok(p->b.db, &rep);
    assert_int_equal(report_origin(&rep, "dc1")->verified, 1);

    /* dc1's event #7 as B holds it (B's local seq 9), one character changed. */
    uint64_t seq = local_seq_of(p->b.db, "dc1", 7);
    assert_int_equal(seq, 9);
    alter_event(p->b.db, seq);
    assert_int_equal(audit_verify(p->b.db, NULL, NULL, &rep), 0);
    print_problems(&rep);
    assert_false(rep.ok);
    assert_int_equal(rep.problem_count, 2);
    assert_int_equal(rep.problems[0].seq, seq);
    assert_string_equal(rep.problems[0].kind, "altered");
    assert_string_equal(rep.problems[0].origin, "dc1");
    assert_int_equal(rep.problems[0].origin_seq, 7);
    /* ... and dc1's signed checkpoint no longer matches, which names the same event. */
    assert_string_equal(rep.problems[1].kind, "origin");
    assert_string_equal(rep.problems[1].origin, "dc1");
    assert_int_equal(rep.problems[1].origin_seq, 7);
    assert_int_equal(rep.problems[1].seq, seq);
    assert_non_null(strstr(rep.problems[1].message, "#7"));
    const struct audit_origin_result *r = report_origin(&rep, "dc1");
    assert_int_equal(r->verified, 0);
    assert_int_equal(report_origin(&rep, "dc2")->verified, -1);
    json_t *j = audit_report_json(&rep, NULL);
    json_t *p1 = json_array_get(json_object_get(j, "problems"), 1);
    assert_string_equal(json_string_value(json_object_get(p1, "origin")), "dc1");
    assert_int_equal(json_integer_value(json_object_get(p1, "origin_seq")), 7);
    json_t *o0 = json_array_get(json_object_get(j, "origins"), 0);
    assert_string_equal(json_string_value(json_object_get(o0, "origin")), "dc1");
    assert_true(json_is_false(json_object_get(o0, "verified")));
    assert_int_equal(json_integer_value(json_object_get(j, "origin_count")), 2);
    json_decref(j);
    json_decref(real);
}

/*
 * Someone with write access to B's index rewrites dc1's event #4 there and
 * recomputes everything B could check on its own: the hash chain from there
 * on, the counters' head, the local tree and dc1's tree (rebuilt on open).
 * Only dc1's signed checkpoint still tells.
 */
static void test_consistent_rewrite_caught_by_checkpoint(void **state)
{
    struct pair *p = *state;
    struct audit_report rep;
    char why[256] = "", *err = NULL;
    add_local(&p->a, 8);
    sync_log(&p->a, &p->b);
    add_local(&p->b, 3);
    json_t *real = checkpoint_of(&p->a, 0);
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, real, why, sizeof(why)), 0);

    repo_db *db = p->b.db;
    uint64_t n = log_size(db), from = local_seq_of(db, "dc1", 4);
    uint8_t prev[32] = {0}, h[32];
    char hex[65];
    for (uint64_t seq = 1; seq <= n; seq++) {
        char *text = NULL;
        uint8_t key[8];
        assert_int_equal(event_read(db, seq, &text), 0);
        json_t *ev = json_loads(text, 0, NULL);
        free(text);
        if (seq == from)
            json_object_set_new(json_object_get(ev, "details"), "reason",
                                json_string("rewritten"));
        json_object_del(ev, "prev");
        json_object_del(ev, "hash");
        char *canon = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
        sha(prev, 32, canon, strlen(canon), NULL, 0, h);
        free(canon);
        hex_encode(prev, 32, hex);
        json_object_set_new(ev, "prev", json_string(hex));
        hex_encode(h, 32, hex);
        json_object_set_new(ev, "hash", json_string(hex));
        memcpy(prev, h, 32);
        text = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(ev);
        put_be64(key, seq);
        rocksdb_put_cf(db->db, db->wopts, db->cf[CF_EVENTS], (const char *)key, 8, text,
                       strlen(text), &err);
        assert_null(err);
        free(text);
    }
    struct repo_counters c = db->ctr;
    memcpy(c.head, prev, 32);
    size_t len = 0;
    char *v = rec_counters_encode(&c, &len);
    rocksdb_put_cf(db->db, db->wopts, db->cf[CF_META], "state", 5, v, len, &err);
    assert_null(err);
    free(v);
    /* Both trees dropped: the next open builds them again over the rewritten log. */
    static const enum repo_cf trees[] = {CF_MERKLE, CF_OMERKLE};
    for (size_t t = 0; t < 2; t++) {
        rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->db, db->ropts, db->cf[trees[t]]);
        rocksdb_writebatch_t *b = rocksdb_writebatch_create();
        for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
            size_t kl;
            const char *k = rocksdb_iter_key(it, &kl);
            rocksdb_writebatch_delete_cf(b, db->cf[trees[t]], k, kl);
        }
        rocksdb_write(db->db, db->wopts, b, &err);
        assert_null(err);
        rocksdb_writebatch_destroy(b);
        rocksdb_iter_destroy(it);
    }
    centre_reopen(&p->b);

    assert_int_equal(audit_verify(p->b.db, NULL, NULL, &rep), 0);
    print_problems(&rep);
    assert_false(rep.ok);
    assert_int_equal(rep.problem_count, 1);
    assert_string_equal(rep.problems[0].kind, "origin");
    assert_string_equal(rep.problems[0].origin, "dc1");
    assert_non_null(strstr(rep.problems[0].message, "dc1's first 8 events"));
    assert_int_equal(report_origin(&rep, "dc1")->verified, 0);
    json_t *st = status_of(&p->b, "dc1");
    assert_true(json_is_false(json_object_get(st, "verified")));
    json_decref(st);
    assert_int_equal(audit_origin_checkpoint_accept(p->b.db, real, why, sizeof(why)),
                     ARCA_E_CONFLICT);
    assert_non_null(strstr(why, "differs here"));
    json_decref(real);
}

/* Drops a column family, as in a data directory from before it existed. */
static void drop_cf(repo_db *db, enum repo_cf cf)
{
    char *err = NULL;
    rocksdb_drop_column_family(db->db, db->cf[cf], &err);
    assert_null(err);
}

static void put_raw(repo_db *db, enum repo_cf cf, const char *k, size_t kl, uint64_t v)
{
    char *err = NULL;
    uint8_t be[8];
    put_be64(be, v);
    rocksdb_put_cf(db->db, db->wopts, db->cf[cf], k, kl, (const char *)be, 8, &err);
    assert_null(err);
}

static void test_migration_backfill(void **state)
{
    struct pair *p = *state;
    struct audit_report rep;
    uint8_t r1[32], r2[32], again[32];
    uint64_t size = 0;
    char why[256];
    add_local(&p->a, 7);
    add_local(&p->b, 4);
    sync_log(&p->b, &p->a);
    add_local(&p->a, 2);
    json_t *cpb = checkpoint_of(&p->b, 0);
    assert_int_equal(audit_origin_checkpoint_accept(p->a.db, cpb, why, sizeof(why)), 0);
    assert_int_equal(audit_origin_root(p->a.db, "dc1", 9, r1), 0);
    assert_int_equal(audit_origin_root(p->a.db, "dc2", 4, r2), 0);

    /* Neither family exists in a data directory from before per-origin trees. */
    drop_cf(p->a.db, CF_OMERKLE);
    drop_cf(p->a.db, CF_OCHECKPOINTS);
    repo_db_free(p->a.db);
    p->a.db = NULL;
    repo_db *ro = NULL;
    assert_int_equal(repo_db_open_readonly(p->a.index, &ro), ARCA_E_DB);
    assert_null(ro);
    assert_int_equal(repo_db_open(p->a.index, "dc1", &p->a.db), 0);
    assert_int_equal(audit_origin_size(p->a.db, "dc1", &size), 0);
    assert_int_equal(size, 9);
    assert_int_equal(audit_origin_root(p->a.db, "dc1", 9, again), 0);
    assert_memory_equal(again, r1, 32);
    assert_int_equal(audit_origin_size(p->a.db, "dc2", &size), 0);
    assert_int_equal(size, 4);
    assert_int_equal(audit_origin_root(p->a.db, "dc2", 4, again), 0);
    assert_memory_equal(again, r2, 32);
    verify_ok(p->a.db, &rep);
    assert_int_equal(rep.origin_count, 2);
    /* It goes on from there, and B's checkpoint is accepted again (nothing was pinned). */
    add_local(&p->a, 1);
    assert_int_equal(audit_origin_size(p->a.db, "dc1", &size), 0);
    assert_int_equal(size, 10);
    assert_int_equal(audit_origin_checkpoint_accept(p->a.db, cpb, why, sizeof(why)), 0);
    verify_ok(p->a.db, &rep);
    assert_int_equal(report_origin(&rep, "dc2")->verified, 1);

    /* A build cut short (one origin's size record missing) is done again. */
    char *err = NULL;
    rocksdb_delete_cf(p->a.db->db, p->a.db->wopts, p->a.db->cf[CF_OMERKLE], "sdc2", 4, &err);
    assert_null(err);
    centre_reopen(&p->a);
    assert_int_equal(audit_origin_root(p->a.db, "dc2", 4, again), 0);
    assert_memory_equal(again, r2, 32);
    verify_ok(p->a.db, &rep);

    /* A tree ahead of what was applied from its origin: the index was altered; refused. */
    put_raw(p->a.db, CF_OMERKLE, "sdc1", 4, 100);
    assert_int_equal(audit_verify(p->a.db, NULL, NULL, &rep), 0);
    assert_false(rep.ok);
    assert_string_equal(rep.problems[0].kind, "origin");
    assert_non_null(strstr(rep.problems[0].message, "100"));
    repo_db_free(p->a.db);
    p->a.db = NULL;
    assert_int_equal(repo_db_open(p->a.index, "dc1", &p->a.db), ARCA_E_CORRUPT);
    assert_null(p->a.db);
    /* Read-only (as `arcad audit verify` opens it) it still opens, to be examined. */
    assert_int_equal(repo_db_open_readonly(p->a.index, &ro), 0);
    assert_int_equal(audit_verify(ro, NULL, NULL, &rep), 0);
    assert_false(rep.ok);
    repo_db_free(ro);
    json_decref(cpb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roots_equal_across_centres, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_exchange, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_other_key_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_root_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered_event_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consistent_rewrite_caught_by_checkpoint, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_migration_backfill, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
