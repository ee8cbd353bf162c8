/*
 * Unit tests for storage/audit.c and audit_sign.c against a real RocksDB in a
 * temporary directory: Merkle roots against a naive recomputation, inclusion
 * and consistency proofs checked by an independent verifier written here
 * (RFC 9162 2.1.3.2 and 2.1.4.2), verification pinpointing altered, removed
 * and reordered events written with raw RocksDB calls, the tree's catch-up
 * over an old log, and signed checkpoints.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "arca_err.h"
#include "fixture.h"
#include "rfc6962_ref.h"
#include "audit.h"
#include "repo.h"
#include "repo_int.h"
#include "token.h"
#include "util.h"

#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
    char dir[64];
    char index[96];
    repo_db *db;
    uint64_t events;
};

static const struct actor_ctx who = {"token:ci", "127.0.0.1:5555", "req-1"};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (fixture_tmpdir(f->dir, sizeof(f->dir), "audit") != 0)
        return -1;
    snprintf(f->index, sizeof(f->index), "%s/index", f->dir);
    if (repo_db_open(f->index, "dc1", &f->db) != 0)
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

/* Appends one event: artifact puts and auth failures, so the log holds several actions. */
static void add_event(struct fixture *f)
{
    uint64_t i = ++f->events;
    if (i % 3 == 0) {
        char reason[64];
        snprintf(reason, sizeof(reason), "unknown token %llu", (unsigned long long)i);
        assert_int_equal(repo_auth_failure(f->db, &who, reason, NULL), 0);
        return;
    }
    char content[64], version[32], path[32];
    struct blob_digests dig;
    struct blob_blocks blocks;
    struct artifact a;
    struct coord c;
    const char *why;
    uint64_t sum;
    int created = -1;
    snprintf(content, sizeof(content), "content %llu", (unsigned long long)i);
    snprintf(version, sizeof(version), "%llu", (unsigned long long)i / 10);
    snprintf(path, sizeof(path), "file-%llu.bin", (unsigned long long)i);
    fixture_digests(content, &dig, &sum);
    blocks.count = 1;
    blocks.sums = &sum;
    assert_int_equal(coord_set(&c, "libs", "app", version, path, &why), 0);
    assert_int_equal(repo_put_artifact(f->db, &c, &dig, &blocks, &who, &a, &created), 0);
    assert_int_equal(created, 1);
}

static void add_events(struct fixture *f, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        add_event(f);
}

/* ---- an independent RFC 6962 implementation: rfc6962_ref.h ----------------------- */

/* The leaf hashes of events 1..n, from the stored bytes. */
static uint8_t (*read_leaves(repo_db *db, uint64_t n))[32]
{
    uint8_t (*leaves)[32] = calloc(n + 1, 32);
    for (uint64_t s = 1; s <= n; s++) {
        char *text = NULL;
        assert_int_equal(event_read(db, s, &text), 0);
        leaf_of(text, strlen(text), leaves[s - 1]);
        free(text);
    }
    return leaves;
}

/* ---- the tree ------------------------------------------------------------------ */

#define MAX_N 70

static void test_roots_match_naive(void **state)
{
    struct fixture *f = *state;
    uint8_t root[32], want[32];
    uint64_t size = 99;
    assert_int_equal(audit_size(f->db, &size), 0);
    assert_int_equal(size, 0);
    assert_int_equal(audit_root(f->db, 0, root), 0);
    sha("", 0, NULL, 0, NULL, 0, want);
    assert_memory_equal(root, want, 32);
    assert_int_equal(audit_root(f->db, 1, root), ARCA_E_NOTFOUND);

    for (uint64_t n = 1; n <= MAX_N; n++) {
        add_event(f);
        assert_int_equal(audit_size(f->db, &size), 0);
        assert_int_equal(size, n);
        uint8_t (*leaves)[32] = read_leaves(f->db, n);
        mth(leaves, n, want);
        assert_int_equal(audit_root(f->db, n, root), 0);
        assert_memory_equal(root, want, 32);
        assert_int_equal(audit_leaf_hash(f->db, n, root), 0);
        assert_memory_equal(root, leaves[n - 1], 32);
        free(leaves);
    }
    /* Every past size still gives its own root. */
    uint8_t (*leaves)[32] = read_leaves(f->db, MAX_N);
    for (uint64_t n = 0; n <= MAX_N; n++) {
        mth(leaves, n, want);
        assert_int_equal(audit_root(f->db, n, root), 0);
        assert_memory_equal(root, want, 32);
    }
    free(leaves);
    assert_int_equal(audit_root(f->db, MAX_N + 1, root), ARCA_E_NOTFOUND);
    assert_int_equal(audit_leaf_hash(f->db, MAX_N + 1, root), ARCA_E_NOTFOUND);
    assert_int_equal(audit_leaf_hash(f->db, 0, root), ARCA_E_NOTFOUND);
}

static void test_inclusion_proofs(void **state)
{
    struct fixture *f = *state;
    uint8_t path[AUDIT_PROOF_MAX][32], root[32], want[32];
    size_t n = 0;
    add_events(f, MAX_N);
    uint8_t (*leaves)[32] = read_leaves(f->db, MAX_N);
    int checked = 0;
    for (uint64_t size = 1; size <= MAX_N; size++) {
        mth(leaves, size, want);
        for (uint64_t seq = 1; seq <= size; seq++) {
            assert_int_equal(audit_inclusion_proof(f->db, seq, size, path, &n, root), 0);
            assert_memory_equal(root, want, 32);
            assert_true(inclusion_ok(seq - 1, size, leaves[seq - 1], path, n, root));
            /* The proof proves nothing else: another leaf, a changed hash, another size. */
            if (size > 1) {
                uint64_t other = seq % size; /* another index */
                assert_false(inclusion_ok(other, size, leaves[seq - 1], path, n, root));
                assert_false(inclusion_ok(seq - 1, size, leaves[other], path, n, root));
                path[n / 2][7] ^= 0x10;
                assert_false(inclusion_ok(seq - 1, size, leaves[seq - 1], path, n, root));
            }
            checked++;
        }
    }
    assert_int_equal(checked, MAX_N * (MAX_N + 1) / 2);
    assert_int_equal(audit_inclusion_proof(f->db, 0, 5, path, &n, root), ARCA_E_INVALID);
    assert_int_equal(audit_inclusion_proof(f->db, 6, 5, path, &n, root), ARCA_E_INVALID);
    assert_int_equal(audit_inclusion_proof(f->db, 1, MAX_N + 1, path, &n, root),
                     ARCA_E_NOTFOUND);
    free(leaves);
}

static void test_consistency_proofs(void **state)
{
    struct fixture *f = *state;
    uint8_t proof[AUDIT_PROOF_MAX][32], r1[32], r2[32], w1[32], w2[32];
    size_t n = 0;
    add_events(f, MAX_N);
    uint8_t (*leaves)[32] = read_leaves(f->db, MAX_N);
    for (uint64_t second = 1; second <= MAX_N; second++) {
        mth(leaves, second, w2);
        for (uint64_t first = 1; first <= second; first++) {
            mth(leaves, first, w1);
            assert_int_equal(audit_consistency_proof(f->db, first, second, proof, &n, r1, r2), 0);
            assert_memory_equal(r1, w1, 32);
            assert_memory_equal(r2, w2, 32);
            assert_true(consistency_ok(first, second, r1, r2, proof, n));
            if (first < second) {
                /* A rewritten old tree, or a proof for other sizes, does not verify. */
                uint8_t bad[32];
                memcpy(bad, r1, 32);
                bad[0] ^= 1;
                assert_false(consistency_ok(first, second, bad, r2, proof, n));
                assert_false(consistency_ok(first, second, r1, bad, proof, n));
                if (first > 1)
                    assert_false(consistency_ok(first - 1, second, r1, r2, proof, n));
                proof[n - 1][3] ^= 0x80;
                assert_false(consistency_ok(first, second, r1, r2, proof, n));
            }
        }
    }
    assert_int_equal(audit_consistency_proof(f->db, 0, 5, proof, &n, r1, r2), ARCA_E_INVALID);
    assert_int_equal(audit_consistency_proof(f->db, 6, 5, proof, &n, r1, r2), ARCA_E_INVALID);
    assert_int_equal(audit_consistency_proof(f->db, 5, MAX_N + 1, proof, &n, r1, r2),
                     ARCA_E_NOTFOUND);
    free(leaves);
}

struct page {
    uint64_t seqs[16];
    size_t n;
    repo_db *db;
};

static int cb_event(void *arg, uint64_t seq, const char *rec, size_t len)
{
    struct page *p = arg;
    char *text = NULL;
    assert_int_equal(event_read(p->db, seq, &text), 0);
    assert_int_equal(strlen(text), len);
    assert_memory_equal(text, rec, len); /* the stored bytes, exactly */
    free(text);
    p->seqs[p->n++] = seq;
    return 0;
}

static void test_events_pages(void **state)
{
    struct fixture *f = *state;
    struct page p = {.db = f->db};
    bool more = true;
    assert_int_equal(audit_events(f->db, 0, 10, cb_event, &p, &more), 0);
    assert_int_equal(p.n, 0);
    assert_false(more);
    add_events(f, 17);
    uint64_t after = 0, seen = 0;
    do {
        p.n = 0;
        assert_int_equal(audit_events(f->db, after, 7, cb_event, &p, &more), 0);
        for (size_t i = 0; i < p.n; i++)
            assert_int_equal(p.seqs[i], ++seen);
        if (p.n)
            after = p.seqs[p.n - 1];
    } while (more);
    assert_int_equal(seen, 17);
    p.n = 0;
    assert_int_equal(audit_events(f->db, 17, 7, cb_event, &p, &more), 0);
    assert_int_equal(p.n, 0);
    assert_int_equal(audit_events(f->db, UINT64_MAX, 7, cb_event, &p, &more), 0);
    assert_int_equal(p.n, 0);
    p.n = 0;
    assert_int_equal(audit_events(f->db, 16, 7, cb_event, &p, &more), 0);
    assert_int_equal(p.n, 1);
    assert_false(more);
}

/* ---- verification ---------------------------------------------------------------- */

#define VERIFY_N 40

static void raw_put_event(repo_db *db, uint64_t seq, const char *text)
{
    uint8_t key[8];
    char *err = NULL;
    put_be64(key, seq);
    rocksdb_put_cf(db->db, db->wopts, db->cf[CF_EVENTS], (const char *)key, 8, text,
                   strlen(text), &err);
    assert_null(err);
}

static void raw_delete_event(repo_db *db, uint64_t seq)
{
    uint8_t key[8];
    char *err = NULL;
    put_be64(key, seq);
    rocksdb_delete_cf(db->db, db->wopts, db->cf[CF_EVENTS], (const char *)key, 8, &err);
    assert_null(err);
}

/* Changes one character of the first string value inside the event's details. */
static void alter_event(repo_db *db, uint64_t seq)
{
    char *text = NULL;
    assert_int_equal(event_read(db, seq, &text), 0);
    char *d = strstr(text, "\"details\":{");
    assert_non_null(d);
    char *v = strstr(d, ":\"");
    assert_non_null(v);
    v[2] = v[2] == 'a' ? 'b' : 'a';
    raw_put_event(db, seq, text);
    free(text);
}

static void swap_events(repo_db *db, uint64_t a, uint64_t b)
{
    char *ta = NULL, *tb = NULL;
    assert_int_equal(event_read(db, a, &ta), 0);
    assert_int_equal(event_read(db, b, &tb), 0);
    raw_put_event(db, a, tb);
    raw_put_event(db, b, ta);
    free(ta);
    free(tb);
}

static void run_verify(repo_db *db, struct audit_report *rep)
{
    assert_int_equal(audit_verify(db, NULL, NULL, rep), 0);
    json_t *j = audit_report_json(rep, NULL);
    assert_non_null(j);
    json_decref(j);
}

static void expect_first(const struct audit_report *rep, uint64_t seq, const char *kind,
                         uint64_t count)
{
    if (rep->ok || rep->problems[0].seq != seq || strcmp(rep->problems[0].kind, kind) != 0 ||
        rep->problem_count != count) {
        for (size_t i = 0; i < rep->nproblems; i++)
            print_message("problem %zu: seq %llu %s: %s\n", i,
                          (unsigned long long)rep->problems[i].seq, rep->problems[i].kind,
                          rep->problems[i].message);
    }
    assert_false(rep->ok);
    assert_int_equal(rep->problems[0].seq, seq);
    assert_string_equal(rep->problems[0].kind, kind);
    assert_int_equal(rep->problem_count, count);
}

static void test_verify_ok(void **state)
{
    struct fixture *f = *state;
    struct audit_report rep;
    uint8_t root[32];
    run_verify(f->db, &rep); /* an empty log is fine */
    assert_true(rep.ok);
    assert_int_equal(rep.size, 0);
    add_events(f, VERIFY_N);
    run_verify(f->db, &rep);
    assert_true(rep.ok);
    assert_int_equal(rep.problem_count, 0);
    assert_int_equal(rep.size, VERIFY_N);
    assert_int_equal(rep.events_checked, VERIFY_N);
    assert_true(rep.root_known);
    assert_int_equal(audit_root(f->db, VERIFY_N, root), 0);
    assert_memory_equal(rep.root, root, 32);

    /* Read-only, beside the writer, as `arcad audit verify` opens it. */
    repo_db *ro = NULL;
    assert_int_equal(repo_db_open_readonly(f->index, &ro), 0);
    run_verify(ro, &rep);
    assert_true(rep.ok);
    assert_int_equal(rep.size, VERIFY_N);
    repo_db_free(ro);
}

static void test_verify_altered(void **state)
{
    struct fixture *f = *state;
    struct audit_report rep;
    add_events(f, VERIFY_N);
    alter_event(f->db, 17);
    run_verify(f->db, &rep);
    expect_first(&rep, 17, "altered", 1);
    assert_non_null(strstr(rep.problems[0].message, "17"));

    /* Bytes that are not JSON (nor UTF-8): named, and the report stays valid JSON. */
    raw_put_event(f->db, 25, "\xff\xfe{\"seq\":25,\x01");
    run_verify(f->db, &rep);
    expect_first(&rep, 17, "altered", 2);
    assert_int_equal(rep.problems[1].seq, 25);
    assert_string_equal(rep.problems[1].kind, "altered");
    json_t *j = audit_report_json(&rep, NULL);
    char *text = json_dumps(j, JSON_COMPACT);
    assert_non_null(text);
    json_t *back = json_loads(text, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(back, "problems")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(back, "first_problem"),
                                                        "seq")), 17);
    json_decref(back);
    free(text);
    json_decref(j);
}

/* An alteration whose author also recomputed the event's chain hash: the Merkle leaf tells. */
static void test_verify_altered_rehashed(void **state)
{
    struct fixture *f = *state;
    struct audit_report rep;
    add_events(f, VERIFY_N);
    char *text = NULL;
    assert_int_equal(event_read(f->db, 12, &text), 0);
    json_t *ev = json_loads(text, 0, NULL);
    json_object_set_new(json_object_get(ev, "details"), "path", json_string("evil.bin"));
    json_object_set_new(json_object_get(ev, "details"), "reason", json_string("evil"));
    const char *ph = json_string_value(json_object_get(ev, "prev"));
    uint8_t prev[32], h[32];
    char hex[65];
    assert_int_equal(hex_decode(ph, 64, prev, 32), 0);
    json_object_del(ev, "prev");
    json_object_del(ev, "hash");
    char *canon = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
    sha(prev, 32, canon, strlen(canon), NULL, 0, h);
    hex_encode(prev, 32, hex);
    json_object_set_new(ev, "prev", json_string(hex));
    hex_encode(h, 32, hex);
    json_object_set_new(ev, "hash", json_string(hex));
    char *forged = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
    raw_put_event(f->db, 12, forged);
    run_verify(f->db, &rep);
    expect_first(&rep, 12, "altered", 1);
    assert_non_null(strstr(rep.problems[0].message, "Merkle leaf"));

    /* The leaf rewritten too: the node above it and the next event's link still tell. */
    uint8_t key[9] = {0}, leaf[32];
    char *err = NULL;
    put_be64(key + 1, 11);
    leaf_of(forged, strlen(forged), leaf);
    rocksdb_put_cf(f->db->db, f->db->wopts, f->db->cf[CF_MERKLE], (const char *)key, 9,
                   (const char *)leaf, 32, &err);
    assert_null(err);
    run_verify(f->db, &rep);
    expect_first(&rep, 12, "merkle", 2);
    assert_non_null(strstr(rep.problems[0].message, "events 11..12"));
    assert_int_equal(rep.problems[1].seq, 13);
    assert_string_equal(rep.problems[1].kind, "chain");
    free(forged);
    free(canon);
    json_decref(ev);
    free(text);
}

static void test_verify_deleted(void **state)
{
    struct fixture *f = *state;
    struct audit_report rep;
    add_events(f, VERIFY_N);
    raw_delete_event(f->db, 23);
    run_verify(f->db, &rep);
    expect_first(&rep, 23, "removed", 1);
    assert_int_equal(rep.events_checked, VERIFY_N - 1);
    assert_false(rep.root_known);
}

static void test_verify_deleted_last(void **state)
{
    struct fixture *f = *state;
    struct audit_report rep;
    add_events(f, VERIFY_N);
    raw_delete_event(f->db, VERIFY_N);
    run_verify(f->db, &rep);
    expect_first(&rep, VERIFY_N, "removed", 1);
}

static void test_verify_swapped(void **state)
{
    struct fixture *f = *state;
    struct audit_report rep;
    add_events(f, VERIFY_N);
    swap_events(f->db, 9, 10);
    run_verify(f->db, &rep);
    expect_first(&rep, 9, "reordered", 2);
    assert_int_equal(rep.problems[1].seq, 10);
    assert_string_equal(rep.problems[1].kind, "reordered");
}

/* Several at once: the report lists them in log order, the first one first. */
static void test_verify_first_of_several(void **state)
{
    struct fixture *f = *state;
    struct audit_report rep;
    add_events(f, VERIFY_N);
    alter_event(f->db, 30);
    raw_delete_event(f->db, 20);
    swap_events(f->db, 10, 11);
    run_verify(f->db, &rep);
    expect_first(&rep, 10, "reordered", 4);
    assert_int_equal(rep.problems[1].seq, 11);
    assert_int_equal(rep.problems[2].seq, 20);
    assert_string_equal(rep.problems[2].kind, "removed");
    assert_int_equal(rep.problems[3].seq, 30);
    assert_string_equal(rep.problems[3].kind, "altered");
}

static void test_verify_tree_and_counters(void **state)
{
    struct fixture *f = *state;
    struct audit_report rep;
    char *err = NULL;
    uint8_t key[9] = {2}, junk[32];
    add_events(f, VERIFY_N);
    /* An interior node (level 2, index 3: events 13..16) rewritten. */
    put_be64(key + 1, 3);
    memset(junk, 0x5a, sizeof(junk));
    rocksdb_put_cf(f->db->db, f->db->wopts, f->db->cf[CF_MERKLE], (const char *)key, 9,
                   (const char *)junk, 32, &err);
    assert_null(err);
    run_verify(f->db, &rep);
    expect_first(&rep, 16, "merkle", 1);
    assert_non_null(strstr(rep.problems[0].message, "13..16"));
    /* The stored tree now gives a proof that does not verify; verify said why. */
    uint8_t path[AUDIT_PROOF_MAX][32], root[32], leaf[32];
    size_t n = 0;
    assert_int_equal(audit_inclusion_proof(f->db, 9, 16, path, &n, root), 0);
    assert_int_equal(audit_leaf_hash(f->db, 9, leaf), 0);
    assert_false(inclusion_ok(8, 16, leaf, path, n, root));

    /* The counters' head no longer naming the last event. */
    repo_db_free(f->db);
    assert_int_equal(repo_db_open(f->index, "dc1", &f->db), 0);
    rocksdb_delete_cf(f->db->db, f->db->wopts, f->db->cf[CF_MERKLE], (const char *)key, 9, &err);
    assert_null(err);
    struct repo_counters c = f->db->ctr;
    c.head[0] ^= 1;
    size_t len = 0;
    char *v = rec_counters_encode(&c, &len);
    rocksdb_put_cf(f->db->db, f->db->wopts, f->db->cf[CF_META], "state", 5, v, len, &err);
    assert_null(err);
    free(v);
    run_verify(f->db, &rep);
    /* The removed node is reported first (it is in the log's middle), then the head. */
    assert_int_equal(rep.problem_count, 2);
    assert_string_equal(rep.problems[0].kind, "merkle");
    assert_non_null(strstr(rep.problems[0].message, "missing"));
    assert_string_equal(rep.problems[1].kind, "counters");
    assert_int_equal(rep.problems[1].seq, VERIFY_N);
}

/* ---- catching up over a log from before the tree ---------------------------------- */

static void delete_merkle(repo_db *db, uint64_t from_leaf)
{
    char *err = NULL;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->db, db->ropts, db->cf[CF_MERKLE]);
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl == 9) {
            unsigned level = (uint8_t)k[0];
            uint64_t index = get_be64((const uint8_t *)k + 1);
            if (((index + 1) << level) <= from_leaf)
                continue; /* a subtree wholly before from_leaf stays */
        }
        rocksdb_writebatch_delete_cf(b, db->cf[CF_MERKLE], k, kl);
    }
    rocksdb_iter_destroy(it);
    if (from_leaf > 0) {
        uint8_t v[8];
        put_be64(v, from_leaf);
        rocksdb_writebatch_put_cf(b, db->cf[CF_MERKLE], "size", 4, (const char *)v, 8);
    }
    rocksdb_write(db->db, db->wopts, b, &err);
    assert_null(err);
    rocksdb_writebatch_destroy(b);
}

static void test_catch_up(void **state)
{
    struct fixture *f = *state;
    uint8_t root[32], again[32];
    uint64_t size = 0;
    struct audit_report rep;
    add_events(f, 37);
    assert_int_equal(audit_root(f->db, 37, root), 0);

    /* No tree at all, as in a data directory from before this change. */
    delete_merkle(f->db, 0);
    assert_int_equal(audit_size(f->db, &size), 0);
    assert_int_equal(size, 0);
    repo_db_free(f->db);
    assert_int_equal(repo_db_open(f->index, "dc1", &f->db), 0);
    assert_int_equal(audit_size(f->db, &size), 0);
    assert_int_equal(size, 37);
    assert_int_equal(audit_root(f->db, 37, again), 0);
    assert_memory_equal(root, again, 32);
    run_verify(f->db, &rep);
    assert_true(rep.ok);

    /* A tree that covers part of the log. */
    delete_merkle(f->db, 11);
    repo_db_free(f->db);
    assert_int_equal(repo_db_open(f->index, "dc1", &f->db), 0);
    assert_int_equal(audit_root(f->db, 37, again), 0);
    assert_memory_equal(root, again, 32);
    add_event(f); /* and apply goes on from there */
    run_verify(f->db, &rep);
    assert_true(rep.ok);
    assert_int_equal(rep.size, 38);

    /* A tree ahead of the log, or a log with a gap to build over: refused. */
    uint8_t v[8];
    char *err = NULL;
    put_be64(v, 1000);
    rocksdb_put_cf(f->db->db, f->db->wopts, f->db->cf[CF_MERKLE], "size", 4, (const char *)v, 8,
                   &err);
    assert_null(err);
    repo_db_free(f->db);
    assert_int_equal(repo_db_open(f->index, "dc1", &f->db), ARCA_E_CORRUPT);
    assert_null(f->db);
    repo_db *ro = NULL;
    assert_int_equal(repo_db_open_readonly(f->index, &ro), 0);
    run_verify(ro, &rep);
    expect_first(&rep, 0, "merkle", 1);
    repo_db_free(ro);
}

static void test_catch_up_refuses_gap(void **state)
{
    struct fixture *f = *state;
    add_events(f, 9);
    delete_merkle(f->db, 4);
    raw_delete_event(f->db, 6);
    repo_db_free(f->db);
    assert_int_equal(repo_db_open(f->index, "dc1", &f->db), ARCA_E_CORRUPT);
    assert_null(f->db);
}

/* ---- checkpoints ------------------------------------------------------------------- */

static void test_checkpoint_sign_verify(void **state)
{
    struct fixture *f = *state;
    audit_signer *s = NULL, *s2 = NULL;
    struct audit_checkpoint cp, cp2, parsed;
    char path[160], text[512], id[17];
    uint8_t pub[32], root[32];
    int created = -1;
    struct stat st;
    const char *why = NULL;

    snprintf(path, sizeof(path), "%s/%s", f->dir, AUDIT_KEY_FILE);
    assert_int_equal(audit_signer_open(f->dir, false, &s, &created), -ENOENT);
    assert_null(s);
    assert_int_equal(audit_signer_open(f->dir, true, &s, &created), 0);
    assert_int_equal(created, 1);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    audit_signer_public(s, pub, id);
    assert_int_equal(strlen(id), 16);
    /* The same key on the next start. */
    assert_int_equal(audit_signer_open(f->dir, true, &s2, &created), 0);
    assert_int_equal(created, 0);
    uint8_t pub2[32];
    char id2[17];
    audit_signer_public(s2, pub2, id2);
    assert_memory_equal(pub, pub2, 32);
    assert_string_equal(id, id2);
    audit_signer_free(s2);

    add_events(f, 21);
    assert_int_equal(audit_checkpoint_make(f->db, s, UINT64_MAX, &cp), 0);
    assert_int_equal(cp.size, 21);
    assert_string_equal(cp.origin, "dc1");
    assert_string_equal(cp.key_id, id);
    assert_int_equal(audit_root(f->db, 21, root), 0);
    assert_memory_equal(cp.root, root, 32);
    assert_true(audit_checkpoint_signature_ok(&cp));

    /* An independent check of the documented canonical text and the signature. */
    char roothex[65];
    hex_encode(root, 32, roothex);
    int tl = snprintf(text, sizeof(text), "arca-checkpoint/v1\ndc1\n21\n%s\n%s\n", roothex,
                      cp.time);
    char mine[512];
    assert_int_equal(audit_checkpoint_text(&cp, mine, sizeof(mine)), (size_t)tl);
    assert_string_equal(mine, text);
    EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk), 1);
    assert_int_equal(EVP_DigestVerify(ctx, cp.signature, 64, (unsigned char *)text, (size_t)tl),
                     1);
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pk);
    uint8_t h[32];
    char want_id[17];
    sha(pub, 32, NULL, 0, NULL, 0, h);
    hex_encode(h, 8, want_id);
    assert_string_equal(cp.key_id, want_id);

    /* JSON round trip. */
    json_t *j = audit_checkpoint_json(&cp);
    char *js = json_dumps(j, JSON_COMPACT);
    assert_int_equal(audit_checkpoint_parse(js, strlen(js), &parsed, &why), 0);
    assert_memory_equal(&parsed, &cp, sizeof(cp));
    free(js);

    /* Any field changed breaks the signature. */
    cp2 = cp;
    cp2.size = 20;
    assert_false(audit_checkpoint_signature_ok(&cp2));
    cp2 = cp;
    cp2.root[31] ^= 1;
    assert_false(audit_checkpoint_signature_ok(&cp2));
    cp2 = cp;
    cp2.time[3] = cp2.time[3] == '1' ? '2' : '1';
    assert_false(audit_checkpoint_signature_ok(&cp2));
    cp2 = cp;
    cp2.signature[0] ^= 1;
    assert_false(audit_checkpoint_signature_ok(&cp2));
    cp2 = cp;
    snprintf(cp2.origin, sizeof(cp2.origin), "dc2");
    assert_false(audit_checkpoint_signature_ok(&cp2));

    /* Past sizes; beyond the log. */
    assert_int_equal(audit_checkpoint_make(f->db, s, 7, &cp2), 0);
    assert_int_equal(cp2.size, 7);
    assert_true(audit_checkpoint_signature_ok(&cp2));
    assert_int_equal(audit_checkpoint_make(f->db, s, 0, &cp2), 0);
    assert_true(audit_checkpoint_signature_ok(&cp2));
    assert_int_equal(audit_checkpoint_make(f->db, s, 22, &cp2), ARCA_E_NOTFOUND);

    /* verify against the checkpoint: the log extends it; then it does not. */
    struct audit_report rep;
    add_events(f, 5);
    assert_int_equal(audit_verify(f->db, &cp, pub, &rep), 0);
    assert_true(rep.ok);
    assert_true(rep.checkpoint_checked && rep.checkpoint_signature_ok && rep.checkpoint_extended);
    json_t *rj = audit_report_json(&rep, &cp);
    assert_true(json_is_true(json_object_get(json_object_get(rj, "checkpoint"), "extended")));
    json_decref(rj);
    uint8_t other[32];
    memcpy(other, pub, 32);
    other[0] ^= 1;
    assert_int_equal(audit_verify(f->db, &cp, other, &rep), 0);
    expect_first(&rep, 0, "checkpoint", 1);
    alter_event(f->db, 5);
    assert_int_equal(audit_verify(f->db, &cp, pub, &rep), 0);
    expect_first(&rep, 5, "altered", 2);
    assert_false(rep.checkpoint_extended);
    assert_string_equal(rep.problems[1].kind, "checkpoint");
    cp2 = cp;
    cp2.size = 1000;
    assert_int_equal(audit_verify(f->db, &cp2, NULL, &rep), 0);
    assert_false(rep.checkpoint_signature_ok);
    json_decref(j);
    audit_signer_free(s);
}

static void test_checkpoint_parse_rejects(void **state)
{
    (void)state;
    struct audit_checkpoint cp;
    const char *why = NULL;
    static const char *const bad[] = {
        "",
        "[]",
        "{\"origin\":\"dc1\"}",
        "{\"origin\":\"a\\nb\",\"size\":1,\"root\":\"00\",\"time\":\"t\",\"key_id\":\"0\","
        "\"public_key\":\"\",\"signature\":\"\"}",
        "{\"origin\":\"dc1\",\"size\":-1}",
        "{\"origin\":\"dc1\",\"size\":1,\"root\":\"zz\"}",
        "{\"origin\":\"dc1\",\"size\":1,\"root\":"
        "\"0000000000000000000000000000000000000000000000000000000000000000\",\"time\":\"t\","
        "\"key_id\":\"0123456789abcdeX\"}",
        "{\"origin\":\"dc1\",\"size\":1,\"root\":"
        "\"0000000000000000000000000000000000000000000000000000000000000000\",\"time\":\"t\","
        "\"key_id\":\"0123456789abcdef\",\"public_key\":\"AAAA\"}",
        "{\"origin\":\"dc1\",\"size\":1,\"root\":"
        "\"0000000000000000000000000000000000000000000000000000000000000000\",\"time\":\"t\","
        "\"key_id\":\"0123456789abcdef\",\"public_key\":"
        "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=\",\"signature\":\"AA==\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(audit_checkpoint_parse(bad[i], strlen(bad[i]), &cp, &why),
                         ARCA_E_INVALID);
        assert_non_null(why);
    }
}

static void test_signer_refuses_bad_key(void **state)
{
    struct fixture *f = *state;
    audit_signer *s = NULL;
    int created = -1;
    char path[160];
    snprintf(path, sizeof(path), "%s/%s", f->dir, AUDIT_KEY_FILE);

    /* Garbage: refused, and left alone. */
    assert_int_equal(fs_write_atomic(path, "not a key\n", 10, 0600), 0);
    assert_int_equal(audit_signer_open(f->dir, true, &s, &created), ARCA_E_CONFIG);
    assert_null(s);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(fs_read_small(path, 100, &text, &len), 0);
    assert_string_equal(text, "not a key\n");
    free(text);

    /* A PEM key of another type. */
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(ec);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(PEM_write_PrivateKey(fp, ec, NULL, NULL, 0, NULL, NULL), 1);
    fclose(fp);
    EVP_PKEY_free(ec);
    assert_int_equal(audit_signer_open(f->dir, true, &s, &created), ARCA_E_CONFIG);

    /* Unreadable (a directory in its place: root reads any file mode). */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    int rc = audit_signer_open(f->dir, true, &s, &created);
    assert_true(rc == -EISDIR || rc == ARCA_E_CONFIG);
    assert_null(s);
    rmdir(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roots_match_naive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inclusion_proofs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consistency_proofs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_altered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_altered_rehashed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_deleted_last, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_swapped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_first_of_several, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_tree_and_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_catch_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_catch_up_refuses_gap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_sign_verify, setup, teardown),
        cmocka_unit_test(test_checkpoint_parse_rejects),
        cmocka_unit_test_setup_teardown(test_signer_refuses_bad_key, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
