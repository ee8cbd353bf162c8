/*
 * The audit log's Merkle trees (RFC 6962 / RFC 9162) and their proofs.
 * Verification is in audit_verify.c, checkpoint signing in audit_sign.c,
 * origin checkpoints in audit_origin.c.
 *
 * Two kinds of tree share this code (audit_int.h, struct mtree): the local
 * tree over this centre's log (cf merkle), and one tree per origin over that
 * origin's events in origin_seq order (cf omerkle), whose leaves are the
 * origin-canonical records, the same bytes at every centre.
 *
 * Stored nodes: every perfect subtree that is complete, keyed by the tree's
 * prefix, level (1 byte; 0 = leaves) and BE64 index within the level, so
 * node (L, i) covers leaves [i * 2^L, (i + 1) * 2^L).  A node never changes
 * once written: appending a leaf only adds the nodes it completes.  The root
 * of any size n is the right fold of the perfect subtrees of n's binary
 * decomposition, and a proof needs one such subtree per level: O(log n)
 * point reads, and readers need no lock (a node they read is final).
 */
#include "audit_int.h"

#include "arca_err.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NODE_KEY_MAX (AUDIT_ORIGIN_MAX + 2 + 9)
#define LEVELS MTREE_LEVELS
/* Events per write batch while building a tree over an old log. */
#define CATCH_UP_BATCH 4096

/* ---- hashing ---------------------------------------------------------------- */

void audit_sha256_parts(const void *a, size_t alen, const void *b, size_t blen, const void *c,
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
    audit_sha256_parts(&zero, 1, data, len, NULL, 0, out);
}

void audit_hash_children(const uint8_t left[AUDIT_HASH_LEN], const uint8_t right[AUDIT_HASH_LEN],
                         uint8_t out[AUDIT_HASH_LEN])
{
    static const uint8_t one = 0x01;
    audit_sha256_parts(&one, 1, left, AUDIT_HASH_LEN, right, AUDIT_HASH_LEN, out);
}

void audit_empty_root(uint8_t out[AUDIT_HASH_LEN])
{
    audit_sha256_parts("", 0, NULL, 0, NULL, 0, out);
}

/* The largest power of two strictly below n (n >= 2): RFC 6962's split point k. */
static uint64_t split_point(uint64_t n)
{
    return 1ull << (63 - __builtin_clzll(n - 1));
}

/* ---- the origin-canonical form ------------------------------------------------ */

/* A stored record's origin (1..AUDIT_ORIGIN_MAX bytes, no NUL) and origin_seq (>= 1). */
bool origin_fields(json_t *rec, char origin[AUDIT_ORIGIN_MAX + 1], uint64_t *origin_seq)
{
    json_t *o = json_object_get(rec, "origin"), *s = json_object_get(rec, "origin_seq");
    size_t n = json_string_length(o);
    if (!json_is_string(o) || n == 0 || n > AUDIT_ORIGIN_MAX ||
        strlen(json_string_value(o)) != n || !json_is_integer(s) || json_integer_value(s) < 1)
        return false;
    memcpy(origin, json_string_value(o), n + 1);
    *origin_seq = (uint64_t)json_integer_value(s);
    return true;
}

int origin_canonical_json(json_t *rec, char **canon, char origin[AUDIT_ORIGIN_MAX + 1],
                          uint64_t *origin_seq)
{
    *canon = NULL;
    if (!json_is_object(rec) || !origin_fields(rec, origin, origin_seq))
        return ARCA_E_INVALID;
    /* What the receiving centre changes; everything else it keeps as the origin wrote it. */
    json_object_del(rec, "seq");
    json_object_del(rec, "prev");
    json_object_del(rec, "hash");
    *canon = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    return *canon ? 0 : -ENOMEM;
}

int audit_origin_canonical(const char *rec, size_t len, char **canon,
                           char origin[AUDIT_ORIGIN_MAX + 1], uint64_t *origin_seq)
{
    json_t *o = json_loadb(rec, len, 0, NULL);
    int rc = origin_canonical_json(o, canon, origin, origin_seq);
    json_decref(o);
    return rc;
}

/* ---- where a tree lives --------------------------------------------------------- */

void mtree_local(struct mtree *t)
{
    memset(t, 0, sizeof(*t));
    t->cf = CF_MERKLE;
    memcpy(t->size_key, "size", 4);
    t->sklen = 4;
}

int mtree_origin(struct mtree *t, const char *origin)
{
    size_t n = origin ? strlen(origin) : 0;
    memset(t, 0, sizeof(*t));
    if (n == 0 || n > AUDIT_ORIGIN_MAX)
        return ARCA_E_INVALID;
    t->cf = CF_OMERKLE;
    t->prefix[0] = 'n';
    memcpy(t->prefix + 1, origin, n);
    t->plen = n + 2; /* with the NUL separator: no origin's prefix is another's */
    t->size_key[0] = 's';
    memcpy(t->size_key + 1, origin, n);
    t->sklen = n + 1;
    return 0;
}

/* For log lines: "the Merkle tree" or "origin X's Merkle tree". */
static const char *tree_name(const struct mtree *t, char buf[AUDIT_ORIGIN_MAX + 32])
{
    if (t->cf == CF_MERKLE)
        return "the Merkle tree";
    snprintf(buf, AUDIT_ORIGIN_MAX + 32, "origin %s's Merkle tree", t->size_key + 1);
    return buf;
}

/* ---- stored nodes ------------------------------------------------------------ */

static size_t node_key(const struct mtree *t, uint8_t key[NODE_KEY_MAX], unsigned level,
                       uint64_t index)
{
    memcpy(key, t->prefix, t->plen);
    key[t->plen] = (uint8_t)level;
    put_be64(key + t->plen + 1, index);
    return t->plen + 9;
}

/* 0, ARCA_E_NOTFOUND, ARCA_E_CORRUPT (a value of the wrong length), ARCA_E_DB. */
int mtree_node(const struct reader *r, unsigned level, uint64_t index,
                    uint8_t out[AUDIT_HASH_LEN])
{
    uint8_t key[NODE_KEY_MAX];
    char *err = NULL;
    size_t len = 0, klen = node_key(r->t, key, level, index);
    char *v = rocksdb_get_cf(r->db->db, r->ro, r->db->cf[r->t->cf], (const char *)key, klen,
                             &len, &err);
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
    char name[AUDIT_ORIGIN_MAX + 32];
    int rc = mtree_node(r, level, index, out);
    if (rc == ARCA_E_NOTFOUND || rc == ARCA_E_CORRUPT) {
        LOG_E("audit: a node of %s (level %u, index %llu) is %s", tree_name(r->t, name), level,
              (unsigned long long)index, rc == ARCA_E_NOTFOUND ? "missing" : "malformed");
        rc = ARCA_E_CORRUPT;
    }
    return rc;
}

int mtree_size(const struct reader *r, uint64_t *size)
{
    char *err = NULL, name[AUDIT_ORIGIN_MAX + 32];
    size_t len = 0;
    char *v = rocksdb_get_cf(r->db->db, r->ro, r->db->cf[r->t->cf], r->t->size_key, r->t->sklen,
                             &len, &err);
    if (err)
        return db_error("get merkle size", err);
    *size = 0;
    if (!v)
        return 0;
    int rc = 0;
    if (len == 8) {
        *size = get_be64((const uint8_t *)v);
    } else {
        LOG_E("audit: the size record of %s is malformed", tree_name(r->t, name));
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
 * stored nodes, which earlier batches wrote.  top (may be NULL) receives the
 * largest subtree completed: the one ending at the new leaf.
 */
static int append_leaf(repo_db *db, rocksdb_writebatch_t *b, const struct mtree *t,
                       uint64_t index, const uint8_t leaf[AUDIT_HASH_LEN],
                       uint8_t (*fr)[AUDIT_HASH_LEN], uint8_t top[AUDIT_HASH_LEN])
{
    struct reader r = {db, db->ropts, t};
    uint8_t h[AUDIT_HASH_LEN], left[AUDIT_HASH_LEN], key[NODE_KEY_MAX];
    unsigned level = 0;
    uint64_t i = index;
    size_t klen = node_key(t, key, 0, i);
    memcpy(h, leaf, AUDIT_HASH_LEN);
    rocksdb_writebatch_put_cf(b, db->cf[t->cf], (const char *)key, klen, (const char *)h,
                              AUDIT_HASH_LEN);
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
        klen = node_key(t, key, level, i);
        rocksdb_writebatch_put_cf(b, db->cf[t->cf], (const char *)key, klen, (const char *)h,
                                  AUDIT_HASH_LEN);
    }
    if (fr)
        memcpy(fr[level], h, AUDIT_HASH_LEN);
    if (top)
        memcpy(top, h, AUDIT_HASH_LEN);
    return 0;
}

static void stage_size(repo_db *db, rocksdb_writebatch_t *b, const struct mtree *t,
                       uint64_t size)
{
    uint8_t v[8];
    put_be64(v, size);
    rocksdb_writebatch_put_cf(b, db->cf[t->cf], t->size_key, t->sklen, (const char *)v,
                              sizeof(v));
}

/*
 * The root of a tree of n leaves whose last completed subtree (top, ending
 * at leaf n - 1) is still in a batch: top folded with the stored perfect
 * subtrees to its left.
 */
static int root_after_append(const struct reader *r, uint64_t n,
                             const uint8_t top[AUDIT_HASH_LEN], uint8_t root[AUDIT_HASH_LEN])
{
    uint8_t left[AUDIT_HASH_LEN];
    memcpy(root, top, AUDIT_HASH_LEN);
    for (unsigned level = (unsigned)__builtin_ctzll(n) + 1; level < LEVELS; level++) {
        if (!(n >> level & 1))
            continue;
        uint64_t start = level + 1 < LEVELS ? n >> (level + 1) << (level + 1) : 0;
        int rc = node_need(r, level, start >> level, left);
        if (rc != 0)
            return rc;
        audit_hash_children(left, root, root);
    }
    return 0;
}

/*
 * An event of another origin completed that origin's tree up to the size of
 * its accepted checkpoint: the checkpoint that could not be checked when it
 * came is checked now.  A mismatch does not stop the event (the log must keep
 * relaying that origin); it is logged, and GET /api/v1/audit/origins and
 * verify report it.
 */
static void check_arrival(repo_db *db, const struct reader *r, const char *origin,
                          uint64_t origin_seq, const uint8_t top[AUDIT_HASH_LEN])
{
    struct ocp_record rec;
    uint8_t root[AUDIT_HASH_LEN];
    char got[65], want[65];
    bool found = false;
    struct reader plain = {db, db->ropts, NULL};
    if (ocp_get(&plain, origin, &rec, &found) != 0 || !found || rec.cp.size != origin_seq)
        return;
    if (root_after_append(r, origin_seq, top, root) != 0)
        return;
    if (memcmp(root, rec.cp.root, AUDIT_HASH_LEN) == 0) {
        LOG_I("audit: origin %s's first %llu events here match its signed checkpoint",
              origin, (unsigned long long)origin_seq);
        return;
    }
    hex_encode(root, AUDIT_HASH_LEN, got);
    hex_encode(rec.cp.root, AUDIT_HASH_LEN, want);
    LOG_E("audit: origin %s's first %llu events here have root %.16s..., its signed checkpoint "
          "(key %s) says %.16s...: that origin's history differs here (see GET "
          "/api/v1/audit/origins and `arcad audit verify`)", origin,
          (unsigned long long)origin_seq, got, rec.cp.key_id, want);
}

int merkle_stage(repo_db *db, rocksdb_writebatch_t *b, uint64_t seq, const char *rec, size_t len)
{
    struct mtree local, ot;
    uint8_t leaf[AUDIT_HASH_LEN], top[AUDIT_HASH_LEN];
    char origin[AUDIT_ORIGIN_MAX + 1], *canon = NULL;
    uint64_t origin_seq = 0, osize = 0;
    mtree_local(&local);
    audit_hash_leaf(rec, len, leaf);
    int rc = append_leaf(db, b, &local, seq - 1, leaf, NULL, NULL);
    if (rc != 0)
        return rc;
    stage_size(db, b, &local, seq);

    /* The same event as a leaf of its origin's tree, at index origin_seq - 1. */
    if ((rc = audit_origin_canonical(rec, len, &canon, origin, &origin_seq)) != 0) {
        if (rc == ARCA_E_INVALID)
            LOG_E("audit: event %llu has no origin or origin_seq", (unsigned long long)seq);
        return rc;
    }
    audit_hash_leaf(canon, strlen(canon), leaf);
    free(canon);
    if ((rc = mtree_origin(&ot, origin)) != 0)
        return rc;
    struct reader r = {db, db->ropts, &ot};
    if ((rc = mtree_size(&r, &osize)) != 0)
        return rc;
    if (osize != origin_seq - 1) {
        LOG_E("audit: origin %s's Merkle tree holds %llu events but event %llu is its number "
              "%llu; the index was altered (run `arcad audit verify`)", origin,
              (unsigned long long)osize, (unsigned long long)seq, (unsigned long long)origin_seq);
        return ARCA_E_CORRUPT;
    }
    if ((rc = append_leaf(db, b, &ot, origin_seq - 1, leaf, NULL, top)) != 0)
        return rc;
    stage_size(db, b, &ot, origin_seq);
    if (strcmp(origin, db->centre) != 0)
        check_arrival(db, &r, origin, origin_seq, top);
    return 0;
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

static int local_catch_up(repo_db *db)
{
    struct mtree t;
    mtree_local(&t);
    struct reader r = {db, db->ropts, &t};
    uint64_t size = 0, events = db->ctr.next_seq - 1, pending = 0;
    uint8_t fr[LEVELS][AUDIT_HASH_LEN];
    rocksdb_iterator_t *it = NULL;
    rocksdb_writebatch_t *b = NULL;
    char *err = NULL;
    int rc = mtree_size(&r, &size);
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
        if ((rc = append_leaf(db, b, &t, size, leaf, fr, NULL)) != 0)
            goto out;
        size++;
        if (++pending == CATCH_UP_BATCH || size == events) {
            stage_size(db, b, &t, size);
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

/*
 * Whether the per-origin trees need building: each origin's tree must hold
 * exactly the events cf origins says were applied from it.  *behind when one
 * holds fewer (a data directory from before per-origin trees, or a build cut
 * short); ARCA_E_CORRUPT when one holds more.
 */
static int origin_trees_behind(repo_db *db, bool *behind)
{
    char *err = NULL;
    int rc = 0;
    *behind = false;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->db, db->ropts, db->cf[CF_ORIGINS]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it) && rc == 0;
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        char origin[AUDIT_ORIGIN_MAX + 1];
        struct mtree t;
        uint64_t size = 0;
        if (kl == 0 || kl > AUDIT_ORIGIN_MAX || memchr(k, '\0', kl) || vl != 8)
            continue; /* not a record apply wrote: verify is the place to say so */
        memcpy(origin, k, kl);
        origin[kl] = '\0';
        uint64_t last = get_be64((const uint8_t *)v);
        mtree_origin(&t, origin);
        struct reader r = {db, db->ropts, &t};
        if ((rc = mtree_size(&r, &size)) != 0)
            break;
        if (size > last) {
            LOG_E("audit: origin %s's Merkle tree covers %llu events but %llu were applied from "
                  "it; the index was altered (run `arcad audit verify`)", origin,
                  (unsigned long long)size, (unsigned long long)last);
            rc = ARCA_E_CORRUPT;
        } else if (size < last) {
            *behind = true;
        }
    }
    if (rc == 0) {
        rocksdb_iter_get_error(it, &err);
        if (err)
            rc = db_error("iterate origins", err);
    }
    rocksdb_iter_destroy(it);
    return rc;
}

/* One origin's tree while the per-origin trees are built. */
struct build_tree {
    struct mtree t;
    uint64_t size;
    bool staged;                      /* size changed since the last write */
    uint8_t fr[LEVELS][AUDIT_HASH_LEN];
};

static struct build_tree *build_find(struct build_tree ***trees, size_t *n, const char *origin)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*trees)[i]->t.size_key + 1, origin) == 0)
            return (*trees)[i];
    struct build_tree **more = realloc(*trees, (*n + 1) * sizeof(**trees));
    if (!more)
        return NULL;
    *trees = more;
    struct build_tree *bt = calloc(1, sizeof(*bt));
    if (!bt)
        return NULL;
    mtree_origin(&bt->t, origin);
    more[(*n)++] = bt;
    return bt;
}

static int build_write(repo_db *db, rocksdb_writebatch_t *b, struct build_tree **trees, size_t n)
{
    char *err = NULL;
    for (size_t i = 0; i < n; i++)
        if (trees[i]->staged) {
            stage_size(db, b, &trees[i]->t, trees[i]->size);
            trees[i]->staged = false;
        }
    rocksdb_write(db->db, db->wopts, b, &err);
    rocksdb_writebatch_clear(b);
    return err ? db_error("write per-origin merkle nodes", err) : 0;
}

/*
 * Builds every origin's tree from the stored events (one pass over the log).
 * Nodes depend only on the events, so rebuilding over a partial earlier build
 * rewrites the same bytes; sizes are written with each batch, so a build cut
 * short is taken up again at the next start.
 */
static int origin_catch_up(repo_db *db)
{
    struct build_tree **trees = NULL;
    size_t ntrees = 0;
    uint64_t pending = 0, built = 0;
    bool behind = false;
    char *err = NULL;
    rocksdb_iterator_t *it = NULL;
    rocksdb_writebatch_t *b = NULL;
    int rc = origin_trees_behind(db, &behind);
    if (rc != 0 || !behind)
        return rc;
    LOG_W("audit: building the per-origin Merkle trees over the %llu events of the log (a log "
          "from before per-origin trees)", (unsigned long long)db->ctr.next_seq - 1);
    it = rocksdb_create_iterator_cf(db->db, db->ropts, db->cf[CF_EVENTS]);
    b = rocksdb_writebatch_create();
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        char origin[AUDIT_ORIGIN_MAX + 1], *canon = NULL;
        uint64_t origin_seq = 0, seq = kl == 8 ? get_be64((const uint8_t *)k) : 0;
        uint8_t leaf[AUDIT_HASH_LEN];
        if (kl != 8)
            continue; /* not a key apply wrote (verify reports it) */
        if ((rc = audit_origin_canonical(v, vl, &canon, origin, &origin_seq)) != 0) {
            if (rc == ARCA_E_INVALID) {
                LOG_E("audit: event %llu has no origin or origin_seq; not building the "
                      "per-origin trees (run `arcad audit verify`)", (unsigned long long)seq);
                rc = ARCA_E_CORRUPT;
            }
            goto out;
        }
        audit_hash_leaf(canon, strlen(canon), leaf);
        free(canon);
        struct build_tree *bt = build_find(&trees, &ntrees, origin);
        if (!bt) {
            rc = -ENOMEM;
            goto out;
        }
        if (origin_seq != bt->size + 1) {
            LOG_E("audit: event %llu is origin %s's number %llu, but %llu of its events came "
                  "before it; not building its tree over a gap (run `arcad audit verify`)",
                  (unsigned long long)seq, origin, (unsigned long long)origin_seq,
                  (unsigned long long)bt->size);
            rc = ARCA_E_CORRUPT;
            goto out;
        }
        if ((rc = append_leaf(db, b, &bt->t, bt->size, leaf, bt->fr, NULL)) != 0)
            goto out;
        bt->size++;
        bt->staged = true;
        built++;
        if (++pending == CATCH_UP_BATCH) {
            if ((rc = build_write(db, b, trees, ntrees)) != 0)
                goto out;
            pending = 0;
        }
    }
    rocksdb_iter_get_error(it, &err);
    if (err) {
        rc = db_error("iterate events", err);
        goto out;
    }
    if ((rc = build_write(db, b, trees, ntrees)) != 0)
        goto out;
    /* Every origin cf origins names must now be whole. */
    if ((rc = origin_trees_behind(db, &behind)) == 0 && behind) {
        LOG_E("audit: the log lacks events cf origins says were applied; the per-origin trees "
              "cannot be completed (run `arcad audit verify`)");
        rc = ARCA_E_CORRUPT;
        goto out;
    }
    LOG_I("audit: the per-origin Merkle trees of %zu origin(s) now cover all %llu events", ntrees,
          (unsigned long long)built);
out:
    for (size_t i = 0; i < ntrees; i++)
        free(trees[i]);
    free(trees);
    if (b)
        rocksdb_writebatch_destroy(b);
    if (it)
        rocksdb_iter_destroy(it);
    return rc;
}

int merkle_catch_up(repo_db *db)
{
    int rc = local_catch_up(db);
    return rc == 0 ? origin_catch_up(db) : rc;
}

/* ---- roots and proofs ------------------------------------------------------------ */

int mtree_root(const struct reader *r, uint64_t size, uint8_t root[AUDIT_HASH_LEN])
{
    uint64_t have = 0;
    int rc = mtree_size(r, &have);
    if (rc != 0)
        return rc;
    if (size > have)
        return ARCA_E_NOTFOUND;
    if (size == 0) {
        audit_empty_root(root);
        return 0;
    }
    return range_hash(r, 0, size, root);
}

int audit_size(repo_db *db, uint64_t *size)
{
    struct mtree t;
    mtree_local(&t);
    struct reader r = {db, db->ropts, &t};
    return mtree_size(&r, size);
}

int audit_root(repo_db *db, uint64_t size, uint8_t root[AUDIT_HASH_LEN])
{
    struct mtree t;
    mtree_local(&t);
    struct reader r = {db, db->ropts, &t};
    return mtree_root(&r, size, root);
}

int audit_leaf_hash(repo_db *db, uint64_t seq, uint8_t out[AUDIT_HASH_LEN])
{
    struct mtree t;
    mtree_local(&t);
    struct reader r = {db, db->ropts, &t};
    if (seq == 0)
        return ARCA_E_NOTFOUND;
    return mtree_node(&r, 0, seq - 1, out);
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

/* The inclusion proof of leaf number `number` (1-based) in the tree r of size size. */
static int tree_inclusion(const struct reader *r, uint64_t number, uint64_t size,
                          uint8_t path[][AUDIT_HASH_LEN], size_t *n, uint8_t root[AUDIT_HASH_LEN])
{
    struct proof p = {path, 0};
    *n = 0;
    if (number == 0 || number > size)
        return ARCA_E_INVALID;
    int rc = mtree_root(r, size, root);
    if (rc == 0)
        rc = path_rec(r, number - 1, 0, size, &p);
    if (rc == 0)
        *n = p.n;
    return rc;
}

static int tree_consistency(const struct reader *r, uint64_t first, uint64_t second,
                            uint8_t proof[][AUDIT_HASH_LEN], size_t *n,
                            uint8_t first_root[AUDIT_HASH_LEN],
                            uint8_t second_root[AUDIT_HASH_LEN])
{
    struct proof p = {proof, 0};
    *n = 0;
    if (first == 0 || first > second)
        return ARCA_E_INVALID;
    int rc = mtree_root(r, second, second_root);
    if (rc == 0)
        rc = range_hash(r, 0, first, first_root);
    if (rc == 0 && first < second)
        rc = subproof_rec(r, first, 0, second, true, &p);
    if (rc == 0)
        *n = p.n;
    return rc;
}

int audit_inclusion_proof(repo_db *db, uint64_t seq, uint64_t size,
                          uint8_t path[][AUDIT_HASH_LEN], size_t *n, uint8_t root[AUDIT_HASH_LEN])
{
    struct mtree t;
    mtree_local(&t);
    struct reader r = {db, db->ropts, &t};
    return tree_inclusion(&r, seq, size, path, n, root);
}

int audit_consistency_proof(repo_db *db, uint64_t first, uint64_t second,
                            uint8_t proof[][AUDIT_HASH_LEN], size_t *n,
                            uint8_t first_root[AUDIT_HASH_LEN],
                            uint8_t second_root[AUDIT_HASH_LEN])
{
    struct mtree t;
    mtree_local(&t);
    struct reader r = {db, db->ropts, &t};
    return tree_consistency(&r, first, second, proof, n, first_root, second_root);
}

/* ---- per-origin trees ------------------------------------------------------------- */

int audit_origin_size(repo_db *db, const char *origin, uint64_t *size)
{
    struct mtree t;
    *size = 0;
    if (mtree_origin(&t, origin) != 0)
        return ARCA_E_INVALID;
    struct reader r = {db, db->ropts, &t};
    return mtree_size(&r, size);
}

int audit_origin_root(repo_db *db, const char *origin, uint64_t size,
                      uint8_t root[AUDIT_HASH_LEN])
{
    struct mtree t;
    if (mtree_origin(&t, origin) != 0)
        return ARCA_E_INVALID;
    struct reader r = {db, db->ropts, &t};
    return mtree_root(&r, size, root);
}

int audit_origin_leaf_hash(repo_db *db, const char *origin, uint64_t origin_seq,
                           uint8_t out[AUDIT_HASH_LEN])
{
    struct mtree t;
    if (mtree_origin(&t, origin) != 0)
        return ARCA_E_INVALID;
    struct reader r = {db, db->ropts, &t};
    if (origin_seq == 0)
        return ARCA_E_NOTFOUND;
    return mtree_node(&r, 0, origin_seq - 1, out);
}

int audit_origin_inclusion_proof(repo_db *db, const char *origin, uint64_t origin_seq,
                                 uint64_t size, uint8_t path[][AUDIT_HASH_LEN], size_t *n,
                                 uint8_t root[AUDIT_HASH_LEN])
{
    struct mtree t;
    *n = 0;
    if (mtree_origin(&t, origin) != 0)
        return ARCA_E_INVALID;
    struct reader r = {db, db->ropts, &t};
    return tree_inclusion(&r, origin_seq, size, path, n, root);
}

int audit_origin_consistency_proof(repo_db *db, const char *origin, uint64_t first,
                                   uint64_t second, uint8_t proof[][AUDIT_HASH_LEN], size_t *n,
                                   uint8_t first_root[AUDIT_HASH_LEN],
                                   uint8_t second_root[AUDIT_HASH_LEN])
{
    struct mtree t;
    *n = 0;
    if (mtree_origin(&t, origin) != 0)
        return ARCA_E_INVALID;
    struct reader r = {db, db->ropts, &t};
    return tree_consistency(&r, first, second, proof, n, first_root, second_root);
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
