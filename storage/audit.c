/*
 * The audit log's Merkle tree (RFC 6962 / RFC 9162) over the event log, its
 * proofs, and verification.  Checkpoint signing is in audit_sign.c.
 *
 * Stored nodes (cf merkle): every perfect subtree that is complete, keyed by
 * level (1 byte; 0 = leaves) and BE64 index within the level, so node
 * (L, i) covers leaves [i * 2^L, (i + 1) * 2^L).  A node never changes once
 * written: appending a leaf only adds the nodes it completes.  The root of
 * any size n is the right fold of the perfect subtrees of n's binary
 * decomposition, and a proof needs one such subtree per level: O(log n)
 * point reads, and readers need no lock (a node they read is final).
 */
#include "audit.h"
#include "repo_int.h"

#include "arca_err.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NODE_KEY_LEN 9
#define LEVELS 64
/* Events per write batch while building the tree over an old log. */
#define CATCH_UP_BATCH 4096

static const char size_key[] = "size";

/* Reads go through a reader: the index's own options, or a snapshot's (verify). */
struct reader {
    repo_db *db;
    const rocksdb_readoptions_t *ro;
};

/* ---- hashing ---------------------------------------------------------------- */

static void sha256_parts(const void *a, size_t alen, const void *b, size_t blen, const void *c,
                         size_t clen, uint8_t out[AUDIT_HASH_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    /* SHA-256 over memory cannot fail short of OOM; abort rather than return a wrong hash. */
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) || !EVP_DigestUpdate(ctx, a, alen) ||
        (blen && !EVP_DigestUpdate(ctx, b, blen)) || (clen && !EVP_DigestUpdate(ctx, c, clen)) ||
        !EVP_DigestFinal_ex(ctx, out, NULL)) {
        LOG_E("audit: SHA-256 failed");
        abort();
    }
    EVP_MD_CTX_free(ctx);
}

void audit_hash_leaf(const void *data, size_t len, uint8_t out[AUDIT_HASH_LEN])
{
    static const uint8_t zero = 0x00;
    sha256_parts(&zero, 1, data, len, NULL, 0, out);
}

void audit_hash_children(const uint8_t left[AUDIT_HASH_LEN], const uint8_t right[AUDIT_HASH_LEN],
                         uint8_t out[AUDIT_HASH_LEN])
{
    static const uint8_t one = 0x01;
    sha256_parts(&one, 1, left, AUDIT_HASH_LEN, right, AUDIT_HASH_LEN, out);
}

static void empty_root(uint8_t out[AUDIT_HASH_LEN])
{
    sha256_parts("", 0, NULL, 0, NULL, 0, out);
}

/* The largest power of two strictly below n (n >= 2): RFC 6962's split point k. */
static uint64_t split_point(uint64_t n)
{
    return 1ull << (63 - __builtin_clzll(n - 1));
}

/* ---- stored nodes ------------------------------------------------------------ */

static void node_key(uint8_t key[NODE_KEY_LEN], unsigned level, uint64_t index)
{
    key[0] = (uint8_t)level;
    put_be64(key + 1, index);
}

/* 0, ARCA_E_NOTFOUND, ARCA_E_CORRUPT (a value of the wrong length), ARCA_E_DB. */
static int node_get(const struct reader *r, unsigned level, uint64_t index,
                    uint8_t out[AUDIT_HASH_LEN])
{
    uint8_t key[NODE_KEY_LEN];
    char *err = NULL;
    size_t len = 0;
    node_key(key, level, index);
    char *v = rocksdb_get_cf(r->db->db, r->ro, r->db->cf[CF_MERKLE], (const char *)key,
                             sizeof(key), &len, &err);
    if (err)
        return db_error("get merkle node", err);
    if (!v)
        return ARCA_E_NOTFOUND;
    int rc = 0;
    if (len == AUDIT_HASH_LEN)
        memcpy(out, v, AUDIT_HASH_LEN);
    else
        rc = ARCA_E_CORRUPT;
    rocksdb_free(v);
    return rc;
}

/* A node that must exist: a missing one means the tree was damaged. */
static int node_need(const struct reader *r, unsigned level, uint64_t index,
                     uint8_t out[AUDIT_HASH_LEN])
{
    int rc = node_get(r, level, index, out);
    if (rc == ARCA_E_NOTFOUND || rc == ARCA_E_CORRUPT) {
        LOG_E("audit: Merkle node (level %u, index %llu) is %s", level,
              (unsigned long long)index, rc == ARCA_E_NOTFOUND ? "missing" : "malformed");
        rc = ARCA_E_CORRUPT;
    }
    return rc;
}

static int tree_size(const struct reader *r, uint64_t *size)
{
    char *err = NULL;
    size_t len = 0;
    char *v = rocksdb_get_cf(r->db->db, r->ro, r->db->cf[CF_MERKLE], size_key,
                             sizeof(size_key) - 1, &len, &err);
    if (err)
        return db_error("get merkle size", err);
    *size = 0;
    if (!v)
        return 0;
    int rc = 0;
    if (len == 8) {
        *size = get_be64((const uint8_t *)v);
    } else {
        LOG_E("audit: the Merkle tree's size record is malformed");
        rc = ARCA_E_CORRUPT;
    }
    rocksdb_free(v);
    return rc;
}

/*
 * MTH(D[a:b]) (b > a) from stored nodes.  Every range a proof or root asks for
 * splits into aligned perfect subtrees, each one stored node; the recursion
 * follows RFC 6962's definition, so an unaligned range would still be right.
 */
static int range_hash(const struct reader *r, uint64_t a, uint64_t b, uint8_t out[AUDIT_HASH_LEN])
{
    uint64_t n = b - a;
    if ((n & (n - 1)) == 0 && a % n == 0) {
        unsigned level = (unsigned)__builtin_ctzll(n);
        return node_need(r, level, a >> level, out);
    }
    uint64_t k = split_point(n);
    uint8_t left[AUDIT_HASH_LEN], right[AUDIT_HASH_LEN];
    int rc = range_hash(r, a, a + k, left);
    if (rc == 0)
        rc = range_hash(r, a + k, b, right);
    if (rc == 0)
        audit_hash_children(left, right, out);
    return rc;
}

/* ---- appending (apply and catch-up) -------------------------------------------- */

/*
 * Appends leaf number index (0-based; the tree had index leaves) to batch b:
 * the leaf node, then each perfect subtree it completes.  The left siblings
 * come from fr (the tree's frontier: fr[L] is the perfect subtree at level L
 * when bit L of index is set; updated here) or, when fr is NULL, from the
 * stored nodes, which earlier batches wrote.
 */
static int append_leaf(repo_db *db, rocksdb_writebatch_t *b, uint64_t index,
                       const uint8_t leaf[AUDIT_HASH_LEN], uint8_t (*fr)[AUDIT_HASH_LEN])
{
    struct reader r = {db, db->ropts};
    uint8_t h[AUDIT_HASH_LEN], left[AUDIT_HASH_LEN], key[NODE_KEY_LEN];
    unsigned level = 0;
    uint64_t i = index;
    memcpy(h, leaf, AUDIT_HASH_LEN);
    node_key(key, 0, i);
    rocksdb_writebatch_put_cf(b, db->cf[CF_MERKLE], (const char *)key, sizeof(key),
                              (const char *)h, AUDIT_HASH_LEN);
    while (i & 1) {
        if (fr) {
            memcpy(left, fr[level], AUDIT_HASH_LEN);
        } else {
            int rc = node_need(&r, level, i - 1, left);
            if (rc != 0)
                return rc;
        }
        audit_hash_children(left, h, h);
        level++;
        i >>= 1;
        node_key(key, level, i);
        rocksdb_writebatch_put_cf(b, db->cf[CF_MERKLE], (const char *)key, sizeof(key),
                                  (const char *)h, AUDIT_HASH_LEN);
    }
    if (fr)
        memcpy(fr[level], h, AUDIT_HASH_LEN);
    return 0;
}

static void stage_size(repo_db *db, rocksdb_writebatch_t *b, uint64_t size)
{
    uint8_t v[8];
    put_be64(v, size);
    rocksdb_writebatch_put_cf(b, db->cf[CF_MERKLE], size_key, sizeof(size_key) - 1,
                              (const char *)v, sizeof(v));
}

int merkle_stage(repo_db *db, rocksdb_writebatch_t *b, uint64_t seq, const char *rec, size_t len)
{
    uint8_t leaf[AUDIT_HASH_LEN];
    audit_hash_leaf(rec, len, leaf);
    int rc = append_leaf(db, b, seq - 1, leaf, NULL);
    if (rc == 0)
        stage_size(db, b, seq);
    return rc;
}

/* Loads the frontier of a tree of size leaves from its stored nodes. */
static int frontier_load(const struct reader *r, uint64_t size, uint8_t (*fr)[AUDIT_HASH_LEN])
{
    for (unsigned level = 0; level < LEVELS; level++) {
        if (!(size >> level & 1))
            continue;
        uint64_t start = level + 1 < LEVELS ? size >> (level + 1) << (level + 1) : 0;
        int rc = node_need(r, level, start >> level, fr[level]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int merkle_catch_up(repo_db *db)
{
    struct reader r = {db, db->ropts};
    uint64_t size = 0, events = db->ctr.next_seq - 1, pending = 0;
    uint8_t fr[LEVELS][AUDIT_HASH_LEN];
    rocksdb_iterator_t *it = NULL;
    rocksdb_writebatch_t *b = NULL;
    char *err = NULL;
    int rc = tree_size(&r, &size);
    if (rc != 0 || size == events)
        return rc;
    if (size > events) {
        LOG_E("audit: the Merkle tree covers %llu events but the log holds %llu; the index was "
              "altered (run `arcad audit verify`)",
              (unsigned long long)size, (unsigned long long)events);
        return ARCA_E_CORRUPT;
    }
    LOG_W("audit: building the Merkle tree over events %llu..%llu (a log from before the audit "
          "tree)", (unsigned long long)size + 1, (unsigned long long)events);
    if ((rc = frontier_load(&r, size, fr)) != 0)
        return rc;
    uint8_t key[8];
    put_be64(key, size + 1);
    it = rocksdb_create_iterator_cf(db->db, db->ropts, db->cf[CF_EVENTS]);
    b = rocksdb_writebatch_create();
    for (rocksdb_iter_seek(it, (const char *)key, 8); rocksdb_iter_valid(it) && size < events;
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        uint8_t leaf[AUDIT_HASH_LEN];
        if (kl != 8 || get_be64((const uint8_t *)k) != size + 1) {
            LOG_E("audit: event %llu is missing from the log; not building a tree over a gap "
                  "(run `arcad audit verify`)", (unsigned long long)size + 1);
            rc = ARCA_E_CORRUPT;
            goto out;
        }
        audit_hash_leaf(v, vl, leaf);
        if ((rc = append_leaf(db, b, size, leaf, fr)) != 0)
            goto out;
        size++;
        if (++pending == CATCH_UP_BATCH || size == events) {
            stage_size(db, b, size);
            rocksdb_write(db->db, db->wopts, b, &err);
            if (err) {
                rc = db_error("write merkle nodes", err);
                goto out;
            }
            rocksdb_writebatch_clear(b);
            pending = 0;
        }
    }
    rocksdb_iter_get_error(it, &err);
    if (err) {
        rc = db_error("iterate events", err);
        goto out;
    }
    if (size < events) {
        LOG_E("audit: event %llu is missing from the log; not building a tree over a gap "
              "(run `arcad audit verify`)", (unsigned long long)size + 1);
        rc = ARCA_E_CORRUPT;
        goto out;
    }
    LOG_I("audit: the Merkle tree now covers all %llu events", (unsigned long long)size);
out:
    if (b)
        rocksdb_writebatch_destroy(b);
    if (it)
        rocksdb_iter_destroy(it);
    return rc;
}

/* ---- roots and proofs ------------------------------------------------------------ */

int audit_size(repo_db *db, uint64_t *size)
{
    struct reader r = {db, db->ropts};
    return tree_size(&r, size);
}

static int root_at(const struct reader *r, uint64_t size, uint8_t root[AUDIT_HASH_LEN])
{
    uint64_t have = 0;
    int rc = tree_size(r, &have);
    if (rc != 0)
        return rc;
    if (size > have)
        return ARCA_E_NOTFOUND;
    if (size == 0) {
        empty_root(root);
        return 0;
    }
    return range_hash(r, 0, size, root);
}

int audit_root(repo_db *db, uint64_t size, uint8_t root[AUDIT_HASH_LEN])
{
    struct reader r = {db, db->ropts};
    return root_at(&r, size, root);
}

int audit_leaf_hash(repo_db *db, uint64_t seq, uint8_t out[AUDIT_HASH_LEN])
{
    struct reader r = {db, db->ropts};
    if (seq == 0)
        return ARCA_E_NOTFOUND;
    return node_get(&r, 0, seq - 1, out);
}

struct proof {
    uint8_t (*h)[AUDIT_HASH_LEN];
    size_t n;
};

static int proof_add(const struct reader *r, struct proof *p, uint64_t a, uint64_t b)
{
    if (p->n == AUDIT_PROOF_MAX)
        return ARCA_E_TOOBIG; /* cannot happen for 64-bit sizes */
    return range_hash(r, a, b, p->h[p->n++]);
}

/* RFC 6962 PATH(m, D[a:b]): the leaf's sibling first, the root's child last. */
static int path_rec(const struct reader *r, uint64_t m, uint64_t a, uint64_t b, struct proof *p)
{
    if (b - a == 1)
        return 0;
    uint64_t k = split_point(b - a);
    int rc;
    if (m < a + k) {
        if ((rc = path_rec(r, m, a, a + k, p)) == 0)
            rc = proof_add(r, p, a + k, b);
    } else {
        if ((rc = path_rec(r, m, a + k, b, p)) == 0)
            rc = proof_add(r, p, a, a + k);
    }
    return rc;
}

/* RFC 6962 SUBPROOF(m, D[a:b], whole), with m the old size as an absolute leaf count. */
static int subproof_rec(const struct reader *r, uint64_t m, uint64_t a, uint64_t b, bool whole,
                        struct proof *p)
{
    if (m == b)
        return whole ? 0 : proof_add(r, p, a, b);
    uint64_t k = split_point(b - a);
    int rc;
    if (m <= a + k) {
        if ((rc = subproof_rec(r, m, a, a + k, whole, p)) == 0)
            rc = proof_add(r, p, a + k, b);
    } else {
        if ((rc = subproof_rec(r, m, a + k, b, false, p)) == 0)
            rc = proof_add(r, p, a, a + k);
    }
    return rc;
}

int audit_inclusion_proof(repo_db *db, uint64_t seq, uint64_t size,
                          uint8_t path[][AUDIT_HASH_LEN], size_t *n, uint8_t root[AUDIT_HASH_LEN])
{
    struct reader r = {db, db->ropts};
    struct proof p = {path, 0};
    *n = 0;
    if (seq == 0 || seq > size)
        return ARCA_E_INVALID;
    int rc = root_at(&r, size, root);
    if (rc == 0)
        rc = path_rec(&r, seq - 1, 0, size, &p);
    if (rc == 0)
        *n = p.n;
    return rc;
}

int audit_consistency_proof(repo_db *db, uint64_t first, uint64_t second,
                            uint8_t proof[][AUDIT_HASH_LEN], size_t *n,
                            uint8_t first_root[AUDIT_HASH_LEN],
                            uint8_t second_root[AUDIT_HASH_LEN])
{
    struct reader r = {db, db->ropts};
    struct proof p = {proof, 0};
    *n = 0;
    if (first == 0 || first > second)
        return ARCA_E_INVALID;
    int rc = root_at(&r, second, second_root);
    if (rc == 0)
        rc = range_hash(&r, 0, first, first_root);
    if (rc == 0 && first < second)
        rc = subproof_rec(&r, first, 0, second, true, &p);
    if (rc == 0)
        *n = p.n;
    return rc;
}

/* ---- reading the log --------------------------------------------------------------- */

int audit_events(repo_db *db, uint64_t after, size_t limit,
                 int (*cb)(void *arg, uint64_t seq, const char *record, size_t len), void *arg,
                 bool *more)
{
    uint8_t key[8];
    char *err = NULL;
    size_t count = 0;
    int rc = 0;
    *more = false;
    if (after >= UINT64_MAX - 1)
        return 0;
    put_be64(key, after + 1);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->db, db->ropts, db->cf[CF_EVENTS]);
    for (rocksdb_iter_seek(it, (const char *)key, 8); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl != 8)
            continue; /* not a key apply wrote; verify reports it */
        if (count == limit) {
            *more = true;
            break;
        }
        const char *v = rocksdb_iter_value(it, &vl);
        count++;
        if ((rc = cb(arg, get_be64((const uint8_t *)k), v, vl)) != 0)
            goto out;
    }
    rocksdb_iter_get_error(it, &err);
    if (err)
        rc = db_error("iterate events", err);
out:
    rocksdb_iter_destroy(it);
    return rc;
}

/* ---- verification ------------------------------------------------------------------ */

struct verifier {
    struct reader r;
    struct audit_report *rep;
    const struct audit_checkpoint *cp;
    /*
     * The tree recomputed from the events, as a frontier (fr[L] valid when bit
     * L of leaves is set).  dirty[L] marks a subtree over a leaf already
     * reported, so that the interior nodes above it are not reported again.
     */
    uint8_t fr[LEVELS][AUDIT_HASH_LEN];
    bool dirty[LEVELS];
    uint64_t leaves;
    bool tree_ok;          /* false after a gap: leaf numbers no longer line up */
    bool cp_root_known;
    uint8_t cp_root[AUDIT_HASH_LEN];
    bool prev_known;       /* prev_hash is the hash of a good previous event */
    uint8_t prev_hash[AUDIT_HASH_LEN];
    bool last_hash_known;
    uint8_t last_hash[AUDIT_HASH_LEN];
    uint64_t last_seq;
};

static void problem(struct verifier *v, uint64_t seq, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void problem(struct verifier *v, uint64_t seq, const char *kind, const char *fmt, ...)
{
    struct audit_report *rep = v->rep;
    rep->ok = false;
    rep->problem_count++;
    if (rep->nproblems == AUDIT_PROBLEMS_MAX)
        return;
    struct audit_problem *p = &rep->problems[rep->nproblems++];
    va_list ap;
    p->seq = seq;
    p->kind = kind;
    va_start(ap, fmt);
    vsnprintf(p->message, sizeof(p->message), fmt, ap);
    va_end(ap);
    /* A parser's message may quote the damaged bytes: keep the report valid UTF-8 JSON. */
    for (char *c = p->message; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            *c = '?';
}

/* The root of the recomputed tree so far: the right fold of its frontier. */
static void frontier_root(const struct verifier *v, uint8_t out[AUDIT_HASH_LEN])
{
    bool have = false;
    if (v->leaves == 0) {
        empty_root(out);
        return;
    }
    for (unsigned level = 0; level < LEVELS; level++) {
        if (!(v->leaves >> level & 1))
            continue;
        if (have) {
            audit_hash_children(v->fr[level], out, out);
        } else {
            memcpy(out, v->fr[level], AUDIT_HASH_LEN);
            have = true;
        }
    }
}

/* Adds the recomputed leaf of event seq and compares every interior node it completes. */
static int verify_append(struct verifier *v, uint64_t seq, const uint8_t leaf[AUDIT_HASH_LEN],
                         bool dirty)
{
    uint8_t h[AUDIT_HASH_LEN], stored[AUDIT_HASH_LEN];
    unsigned level = 0;
    uint64_t i = v->leaves;
    memcpy(h, leaf, AUDIT_HASH_LEN);
    while (i & 1) {
        audit_hash_children(v->fr[level], h, h);
        dirty = dirty || v->dirty[level];
        level++;
        i >>= 1;
        int rc = node_get(&v->r, level, i, stored);
        if (rc == ARCA_E_DB)
            return rc;
        if (!dirty && (rc != 0 || memcmp(stored, h, AUDIT_HASH_LEN) != 0)) {
            uint64_t first = i << level;
            problem(v, seq, "merkle",
                    "the stored Merkle node over events %llu..%llu (level %u, index %llu) is %s",
                    (unsigned long long)first + 1, (unsigned long long)(first + (1ull << level)),
                    level, (unsigned long long)i,
                    rc == ARCA_E_NOTFOUND ? "missing"
                                          : "not the hash of those events (the tree was altered)");
            dirty = true;
        }
    }
    memcpy(v->fr[level], h, AUDIT_HASH_LEN);
    v->dirty[level] = dirty;
    v->leaves++;
    if (v->cp && v->leaves == v->cp->size) {
        frontier_root(v, v->cp_root);
        v->cp_root_known = true;
    }
    return 0;
}

static int json_hash(json_t *o, const char *key, uint8_t out[AUDIT_HASH_LEN])
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && hex_decode(s, strlen(s), out, AUDIT_HASH_LEN) == 0 ? 0 : ARCA_E_INVALID;
}

/*
 * Checks one stored event (key seq, the record's bytes) and feeds its leaf to
 * the recomputed tree.  One problem at most per event: the most telling one.
 */
static int verify_event(struct verifier *v, uint64_t seq, const char *val, size_t len)
{
    uint8_t leaf[AUDIT_HASH_LEN], stored_leaf[AUDIT_HASH_LEN], prev[AUDIT_HASH_LEN];
    uint8_t hash[AUDIT_HASH_LEN], computed[AUDIT_HASH_LEN];
    json_error_t jerr;
    char *canon = NULL;
    bool bad = true, leaf_bad = false, hash_known = false;
    int rc = 0;
    json_t *rec = json_loadb(val, len, 0, &jerr);

    audit_hash_leaf(val, len, leaf);
    int lrc = v->tree_ok ? node_get(&v->r, 0, seq - 1, stored_leaf) : ARCA_E_NOTFOUND;
    if (lrc == ARCA_E_DB) {
        rc = lrc;
        goto out;
    }
    leaf_bad = v->tree_ok && (lrc != 0 || memcmp(leaf, stored_leaf, AUDIT_HASH_LEN) != 0);

    json_t *seqv = json_object_get(rec, "seq");
    if (!json_is_object(rec)) {
        problem(v, seq, "altered", "event %llu is not a JSON object (%s)", (unsigned long long)seq,
                rec ? "another JSON value" : jerr.text);
    } else if (!json_is_integer(seqv)) {
        problem(v, seq, "altered", "event %llu has no integer \"seq\"", (unsigned long long)seq);
    } else if ((uint64_t)json_integer_value(seqv) != seq) {
        problem(v, seq, "reordered", "the record stored at seq %llu says it is event %lld: events "
                "were moved or reordered", (unsigned long long)seq,
                (long long)json_integer_value(seqv));
    } else if (json_hash(rec, "prev", prev) != 0 || json_hash(rec, "hash", hash) != 0) {
        problem(v, seq, "altered", "event %llu lacks a well-formed \"prev\" or \"hash\"",
                (unsigned long long)seq);
    } else {
        hash_known = true;
        json_object_del(rec, "prev");
        json_object_del(rec, "hash");
        /* The chain hashes the canonical text: compact, sorted keys, without prev and hash. */
        canon = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
        if (!canon) {
            rc = -ENOMEM;
            goto out;
        }
        sha256_parts(prev, AUDIT_HASH_LEN, canon, strlen(canon), NULL, 0, computed);
        if (memcmp(computed, hash, AUDIT_HASH_LEN) != 0)
            problem(v, seq, "altered", "event %llu was altered: its content does not match its "
                    "hash", (unsigned long long)seq);
        else if (leaf_bad && lrc == ARCA_E_NOTFOUND)
            problem(v, seq, "merkle", "event %llu has no Merkle leaf", (unsigned long long)seq);
        else if (leaf_bad)
            problem(v, seq, "altered", "event %llu was altered: its stored bytes do not match its "
                    "Merkle leaf (its hash was recomputed, or the leaf was altered)",
                    (unsigned long long)seq);
        else if (v->prev_known && memcmp(prev, v->prev_hash, AUDIT_HASH_LEN) != 0)
            problem(v, seq, "chain", "event %llu's prev is not the hash of event %llu: one of "
                    "them was altered and rehashed", (unsigned long long)seq,
                    (unsigned long long)seq - 1);
        else
            bad = false;
    }
    v->prev_known = !bad && hash_known;
    if (hash_known)
        memcpy(v->prev_hash, hash, AUDIT_HASH_LEN);
    v->last_hash_known = hash_known;
    memcpy(v->last_hash, hash_known ? hash : leaf, AUDIT_HASH_LEN);
    if (v->tree_ok)
        rc = verify_append(v, seq, leaf, leaf_bad || bad);
out:
    free(canon);
    json_decref(rec);
    return rc;
}

/* The counters in meta "state", read through the snapshot. */
struct stored_counters {
    bool found;
    uint64_t next_seq, event_count;
    uint8_t head[AUDIT_HASH_LEN];
};

static int read_counters(const struct reader *r, struct stored_counters *sc)
{
    char *err = NULL;
    size_t len = 0;
    memset(sc, 0, sizeof(*sc));
    sc->next_seq = 1;
    char *v = rocksdb_get_cf(r->db->db, r->ro, r->db->cf[CF_META], "state", 5, &len, &err);
    if (err)
        return db_error("get counters", err);
    if (!v)
        return 0;
    json_t *o = json_loadb(v, len, 0, NULL);
    rocksdb_free(v);
    json_t *ns = json_object_get(o, "next_seq"), *ec = json_object_get(o, "event_count");
    if (json_is_integer(ns) && json_integer_value(ns) >= 1 && json_is_integer(ec) &&
        json_integer_value(ec) >= 0 && json_hash(o, "head", sc->head) == 0) {
        sc->found = true;
        sc->next_seq = (uint64_t)json_integer_value(ns);
        sc->event_count = (uint64_t)json_integer_value(ec);
    }
    json_decref(o);
    return sc->found ? 0 : ARCA_E_INVALID;
}

static int verify_end(struct verifier *v, uint64_t next_expected)
{
    struct audit_report *rep = v->rep;
    struct stored_counters sc;
    uint64_t held = next_expected - 1, tsize = 0;
    int rc = read_counters(&v->r, &sc);
    rep->size = held;
    if (rc == ARCA_E_INVALID) {
        problem(v, 0, "counters", "the counters record (meta \"state\") is malformed");
    } else if (rc == 0) {
        uint64_t want = sc.next_seq - 1;
        rep->size = want;
        if (held + 1 == want)
            problem(v, want, "removed", "event %llu, the last, is missing (the counters say the "
                    "log holds %llu events)", (unsigned long long)want, (unsigned long long)want);
        else if (held < want)
            problem(v, held + 1, "removed", "events %llu..%llu at the end of the log are missing",
                    (unsigned long long)held + 1, (unsigned long long)want);
        else if (held > want)
            problem(v, want + 1, "appended", "events %llu..%llu are in the log but not in the "
                    "counters (next_seq %llu): they were added outside apply",
                    (unsigned long long)want + 1, (unsigned long long)held,
                    (unsigned long long)sc.next_seq);
        else if (held > 0 && v->last_hash_known && memcmp(sc.head, v->last_hash, 32) != 0)
            problem(v, held, "counters", "the counters' head is not the hash of the last event "
                    "(%llu)", (unsigned long long)held);
        else if (held == 0 && sc.found && memcmp(sc.head, (uint8_t[32]){0}, 32) != 0)
            problem(v, 0, "counters", "the log is empty but the counters' head is not zero");
        if (sc.event_count != want)
            problem(v, 0, "counters", "the counters count %llu events but next_seq says %llu",
                    (unsigned long long)sc.event_count, (unsigned long long)want);
        if (tree_size(&v->r, &tsize) != 0 || tsize != want)
            problem(v, 0, "merkle", "the Merkle tree's size record says %llu events, the "
                    "counters %llu", (unsigned long long)tsize, (unsigned long long)want);
    }
    if (v->tree_ok) {
        frontier_root(v, rep->root);
        rep->root_known = true;
    }
    return rc == ARCA_E_INVALID ? 0 : rc;
}

static void verify_checkpoint(struct verifier *v, const uint8_t *trusted_key)
{
    const struct audit_checkpoint *cp = v->cp;
    struct audit_report *rep = v->rep;
    char want[65], got[65];
    rep->checkpoint_checked = true;
    rep->checkpoint_signature_ok = audit_checkpoint_signature_ok(cp);
    if (!rep->checkpoint_signature_ok)
        problem(v, 0, "checkpoint", "the checkpoint's signature does not verify");
    if (trusted_key && memcmp(trusted_key, cp->public_key, 32) != 0)
        problem(v, 0, "checkpoint", "the checkpoint is signed by key %s, not by this data "
                "directory's audit key", cp->key_id);
    if (strcmp(cp->origin, v->r.db->centre) != 0)
        problem(v, 0, "checkpoint", "the checkpoint is for centre '%s', this log is centre '%s'",
                cp->origin, v->r.db->centre);
    if (cp->size > rep->size) {
        problem(v, rep->size + 1, "checkpoint", "the checkpoint covers %llu events but the log "
                "holds only %llu: events were removed", (unsigned long long)cp->size,
                (unsigned long long)rep->size);
        return;
    }
    if (cp->size == 0 && !v->cp_root_known) {
        empty_root(v->cp_root);
        v->cp_root_known = true;
    }
    if (!v->cp_root_known) {
        problem(v, 0, "checkpoint", "the log's first %llu events cannot be recomputed (one is "
                "missing or out of place), so it does not extend the checkpoint",
                (unsigned long long)cp->size);
        return;
    }
    rep->checkpoint_extended = memcmp(v->cp_root, cp->root, AUDIT_HASH_LEN) == 0;
    if (!rep->checkpoint_extended) {
        hex_encode(cp->root, AUDIT_HASH_LEN, want);
        hex_encode(v->cp_root, AUDIT_HASH_LEN, got);
        problem(v, 0, "checkpoint", "the log's first %llu events have root %.16s..., the "
                "checkpoint says %.16s...: the log was rewritten", (unsigned long long)cp->size,
                got, want);
    }
}

int audit_verify(repo_db *db, const struct audit_checkpoint *cp, const uint8_t *trusted_key,
                 struct audit_report *rep)
{
    int rc = 0;
    char *err = NULL;
    uint64_t expected = 1;
    struct verifier *v = calloc(1, sizeof(*v));
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    const rocksdb_snapshot_t *snap = rocksdb_create_snapshot(db->db);
    rocksdb_iterator_t *it = NULL;
    memset(rep, 0, sizeof(*rep));
    rep->ok = true;
    if (!v) {
        rc = -ENOMEM;
        goto out;
    }
    /* One snapshot for the whole scan: events, nodes and counters from the same instant. */
    if (snap)
        rocksdb_readoptions_set_snapshot(ro, snap);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    v->r = (struct reader){db, ro};
    v->rep = rep;
    v->cp = cp;
    v->tree_ok = true;
    v->prev_known = true; /* the first event's prev is 32 zero bytes */
    it = rocksdb_create_iterator_cf(db->db, ro, db->cf[CF_EVENTS]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *val = rocksdb_iter_value(it, &vl);
        if (kl != 8) {
            problem(v, 0, "appended", "a key of %zu bytes in the event log (apply writes 8)", kl);
            continue;
        }
        uint64_t seq = get_be64((const uint8_t *)k);
        if (seq == 0) {
            problem(v, 0, "appended", "an event at seq 0 (the log starts at 1)");
            continue;
        }
        if (seq > expected) {
            if (seq - expected == 1)
                problem(v, expected, "removed", "event %llu is missing (removed from the log)",
                        (unsigned long long)expected);
            else
                problem(v, expected, "removed", "events %llu..%llu are missing (removed from "
                        "the log)", (unsigned long long)expected, (unsigned long long)seq - 1);
            /* Leaf numbers no longer match positions: the tree cannot be followed further. */
            v->tree_ok = false;
            v->prev_known = false;
        }
        expected = seq + 1;
        rep->events_checked++;
        if ((rc = verify_event(v, seq, val, vl)) != 0)
            goto out;
    }
    rocksdb_iter_get_error(it, &err);
    if (err) {
        rc = db_error("iterate events", err);
        goto out;
    }
    if ((rc = verify_end(v, expected)) != 0)
        goto out;
    if (cp)
        verify_checkpoint(v, trusted_key);
out:
    if (it)
        rocksdb_iter_destroy(it);
    if (snap)
        rocksdb_release_snapshot(db->db, snap);
    rocksdb_readoptions_destroy(ro);
    free(v);
    return rc;
}

json_t *audit_report_json(const struct audit_report *rep, const struct audit_checkpoint *cp)
{
    char hex[65];
    json_t *problems = json_array(), *o = json_object();
    if (!problems || !o) {
        json_decref(problems);
        json_decref(o);
        return NULL;
    }
    for (size_t i = 0; i < rep->nproblems; i++) {
        const struct audit_problem *p = &rep->problems[i];
        json_array_append_new(problems, json_pack("{s:I,s:s,s:s}", "seq", (json_int_t)p->seq,
                                                  "kind", p->kind, "message", p->message));
    }
    json_object_set_new(o, "ok", json_boolean(rep->ok));
    json_object_set_new(o, "size", json_integer((json_int_t)rep->size));
    json_object_set_new(o, "events_checked", json_integer((json_int_t)rep->events_checked));
    hex_encode(rep->root, AUDIT_HASH_LEN, hex);
    json_object_set_new(o, "root", rep->root_known ? json_string(hex) : json_null());
    json_object_set_new(o, "problem_count", json_integer((json_int_t)rep->problem_count));
    json_object_set_new(o, "first_problem",
                        rep->nproblems ? json_deep_copy(json_array_get(problems, 0)) : json_null());
    json_object_set_new(o, "problems", problems);
    if (cp && rep->checkpoint_checked) {
        hex_encode(cp->root, AUDIT_HASH_LEN, hex);
        json_object_set_new(o, "checkpoint",
                            json_pack("{s:I,s:s,s:s,s:b,s:b}", "size", (json_int_t)cp->size,
                                      "root", hex, "key_id", cp->key_id, "signature_ok",
                                      rep->checkpoint_signature_ok, "extended",
                                      rep->checkpoint_extended));
    }
    return o;
}
