/*
 * Verification of the audit log (audit_verify): everything is re-derived from
 * a consistent snapshot of the stored events and compared with what the index
 * stores: the hash chain, the local Merkle tree, the counters, every origin's
 * Merkle tree (from the origin-canonical records, in origin_seq order) and
 * the checkpoints: a saved one of this log, and each origin's accepted one.
 *
 * A problem is reported once: an event the local checks found damaged is not
 * reported again by its origin's tree, and the origins' gaps that follow from
 * a gap in the log itself are not reported either.  What only the origins'
 * trees can show is reported in full: a record rewritten together with its
 * hash and local leaf, and a history that differs from its origin's signed
 * checkpoint (named by the first of its events found damaged, when one was).
 */
#include "audit_int.h"

#include "arca_err.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEVELS MTREE_LEVELS
/* Origins verification follows (a damaged log could name any number of them). */
#define VERIFY_ORIGINS_MAX 4096

/* ---- verification ------------------------------------------------------------------ */

/*
 * A tree recomputed from the events, as a frontier (fr[L] valid when bit L
 * of leaves is set), compared with its stored nodes as it grows.  dirty[L]
 * marks a subtree over a leaf already reported, so that the interior nodes
 * above it are not reported again.
 */
struct vtree {
    struct reader r;            /* the stored tree, through the snapshot */
    uint8_t fr[LEVELS][AUDIT_HASH_LEN];
    bool dirty[LEVELS];
    uint64_t leaves;
    uint64_t cp_size;           /* the size whose root is kept (UINT64_MAX: none) */
    bool cp_root_known;
    uint8_t cp_root[AUDIT_HASH_LEN];
};

/* One origin's events in the log, and its accepted checkpoint. */
struct vorigin {
    char origin[AUDIT_ORIGIN_MAX + 1];
    struct mtree tree;
    struct vtree t;
    bool followed;              /* its events came in origin_seq order so far: t holds them all */
    uint64_t broken_at;         /* when not followed: the origin_seq that was expected */
    uint64_t count, highest;    /* its events seen, and the largest origin_seq among them */
    uint64_t first_bad_oseq, first_bad_seq; /* the first of its events found damaged (0: none) */
    bool has_cp;
    struct ocp_record ocp;
};

struct verifier {
    struct mtree local;
    struct vtree t;             /* the local tree; t.r reads through the snapshot */
    struct audit_report *rep;
    const struct audit_checkpoint *cp;
    bool tree_ok;          /* false after a gap: leaf numbers no longer line up */
    bool prev_known;       /* prev_hash is the hash of a good previous event */
    uint8_t prev_hash[AUDIT_HASH_LEN];
    bool last_hash_known;
    uint8_t last_hash[AUDIT_HASH_LEN];
    /*
     * A removed, reordered or appended event was reported, or one whose origin
     * cannot be read: the origins' gaps and counts follow from it.
     */
    bool order_broken;
    /* The origin and origin_seq of what is being checked, for the problems it raises. */
    const char *ctx_origin;
    uint64_t ctx_oseq;
    struct vorigin **origins;   /* each malloc'd: vtree readers point into them */
    size_t norigins;
    size_t last_hit;
    bool origins_capped;
};

static void problem(struct verifier *v, uint64_t seq, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void problem(struct verifier *v, uint64_t seq, const char *kind, const char *fmt, ...)
{
    struct audit_report *rep = v->rep;
    rep->ok = false;
    rep->problem_count++;
    if (!strcmp(kind, "removed") || !strcmp(kind, "reordered") || !strcmp(kind, "appended"))
        v->order_broken = true;
    if (rep->nproblems == AUDIT_PROBLEMS_MAX)
        return;
    struct audit_problem *p = &rep->problems[rep->nproblems++];
    va_list ap;
    p->seq = seq;
    p->kind = kind;
    snprintf(p->origin, sizeof(p->origin), "%s", v->ctx_origin ? v->ctx_origin : "");
    p->origin_seq = v->ctx_origin ? v->ctx_oseq : 0;
    va_start(ap, fmt);
    vsnprintf(p->message, sizeof(p->message), fmt, ap);
    va_end(ap);
    /* A parser's message may quote the damaged bytes: keep the report valid UTF-8 JSON. */
    for (char *c = p->message; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            *c = '?';
    for (char *c = p->origin; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            *c = '?';
}

/* The root of the recomputed tree so far: the right fold of its frontier. */
static void frontier_root(const struct vtree *t, uint8_t out[AUDIT_HASH_LEN])
{
    bool have = false;
    if (t->leaves == 0) {
        audit_empty_root(out);
        return;
    }
    for (unsigned level = 0; level < LEVELS; level++) {
        if (!(t->leaves >> level & 1))
            continue;
        if (have) {
            audit_hash_children(t->fr[level], out, out);
        } else {
            memcpy(out, t->fr[level], AUDIT_HASH_LEN);
            have = true;
        }
    }
}

/*
 * Adds the recomputed leaf of event seq to t (the local tree, or origin vo's
 * when vo is not NULL) and compares every interior node it completes.
 */
static int verify_append(struct verifier *v, struct vtree *t, const struct vorigin *vo,
                         uint64_t seq, const uint8_t leaf[AUDIT_HASH_LEN], bool dirty)
{
    uint8_t h[AUDIT_HASH_LEN], stored[AUDIT_HASH_LEN];
    unsigned level = 0;
    uint64_t i = t->leaves;
    memcpy(h, leaf, AUDIT_HASH_LEN);
    while (i & 1) {
        audit_hash_children(t->fr[level], h, h);
        dirty = dirty || t->dirty[level];
        level++;
        i >>= 1;
        int rc = mtree_node(&t->r, level, i, stored);
        if (rc == ARCA_E_DB)
            return rc;
        if (!dirty && (rc != 0 || memcmp(stored, h, AUDIT_HASH_LEN) != 0)) {
            uint64_t first = i << level;
            const char *what = rc == ARCA_E_NOTFOUND
                                   ? "missing"
                                   : "not the hash of those events (the tree was altered)";
            if (vo)
                problem(v, seq, "origin",
                        "the stored Merkle node of origin %s over its events #%llu..#%llu "
                        "(level %u, index %llu) is %s", vo->origin,
                        (unsigned long long)first + 1,
                        (unsigned long long)(first + (1ull << level)), level,
                        (unsigned long long)i, what);
            else
                problem(v, seq, "merkle",
                        "the stored Merkle node over events %llu..%llu (level %u, index %llu) "
                        "is %s", (unsigned long long)first + 1,
                        (unsigned long long)(first + (1ull << level)), level,
                        (unsigned long long)i, what);
            dirty = true;
        }
    }
    memcpy(t->fr[level], h, AUDIT_HASH_LEN);
    t->dirty[level] = dirty;
    t->leaves++;
    if (t->leaves == t->cp_size) {
        frontier_root(t, t->cp_root);
        t->cp_root_known = true;
    }
    return 0;
}

/* The entry of origin, made on first sight.  *out is NULL past VERIFY_ORIGINS_MAX.  0 or -ENOMEM. */
static int vorigin_get(struct verifier *v, const char *origin, struct vorigin **out)
{
    *out = NULL;
    if (v->last_hit < v->norigins && strcmp(v->origins[v->last_hit]->origin, origin) == 0) {
        *out = v->origins[v->last_hit];
        return 0;
    }
    for (size_t i = 0; i < v->norigins; i++)
        if (strcmp(v->origins[i]->origin, origin) == 0) {
            v->last_hit = i;
            *out = v->origins[i];
            return 0;
        }
    if (v->norigins == VERIFY_ORIGINS_MAX) {
        if (!v->origins_capped)
            problem(v, 0, "origin", "the log names more than %d origins; the others are not "
                    "checked", VERIFY_ORIGINS_MAX);
        v->origins_capped = true;
        return 0;
    }
    struct vorigin **more = realloc(v->origins, (v->norigins + 1) * sizeof(*more));
    if (!more)
        return -ENOMEM;
    v->origins = more;
    struct vorigin *vo = calloc(1, sizeof(*vo));
    if (!vo)
        return -ENOMEM;
    snprintf(vo->origin, sizeof(vo->origin), "%s", origin);
    mtree_origin(&vo->tree, origin);
    vo->t.r = (struct reader){v->t.r.db, v->t.r.ro, &vo->tree};
    vo->t.cp_size = UINT64_MAX;
    vo->followed = true;
    v->last_hit = v->norigins;
    more[v->norigins++] = vo;
    *out = vo;
    return 0;
}

/*
 * Feeds event seq (its parsed record, which this changes) to its origin's
 * recomputed tree.  reported: the event's local checks already raised a
 * problem, which says enough about it.  One problem at most per event.
 */
static int verify_origin_event(struct verifier *v, uint64_t seq, json_t *rec, bool reported)
{
    char origin[AUDIT_ORIGIN_MAX + 1], *canon = NULL;
    uint8_t leaf[AUDIT_HASH_LEN], stored[AUDIT_HASH_LEN];
    uint64_t oseq = 0;
    struct vorigin *vo = NULL;
    int rc = origin_canonical_json(rec, &canon, origin, &oseq);
    if (rc == -ENOMEM)
        return rc;
    if (rc != 0) {
        if (!reported)
            problem(v, seq, "origin", "event %llu has no well-formed origin and origin_seq",
                    (unsigned long long)seq);
        return 0;
    }
    audit_hash_leaf(canon, strlen(canon), leaf);
    free(canon);
    if ((rc = vorigin_get(v, origin, &vo)) != 0 || !vo)
        return rc;
    vo->count++;
    if (oseq > vo->highest)
        vo->highest = oseq;

    int lrc = mtree_node(&vo->t.r, 0, oseq - 1, stored);
    if (lrc == ARCA_E_DB)
        return lrc;
    bool leaf_bad = lrc != 0 || memcmp(stored, leaf, AUDIT_HASH_LEN) != 0;
    if (leaf_bad && !reported) {
        if (lrc == ARCA_E_NOTFOUND)
            problem(v, seq, "origin", "event %llu (origin %s #%llu) has no leaf in its origin's "
                    "Merkle tree", (unsigned long long)seq, origin, (unsigned long long)oseq);
        else
            problem(v, seq, "origin", "event %llu (origin %s #%llu) was altered: it does not "
                    "match its leaf in its origin's Merkle tree", (unsigned long long)seq,
                    origin, (unsigned long long)oseq);
    }
    bool bad = reported || leaf_bad;
    if (bad && vo->first_bad_oseq == 0) {
        vo->first_bad_oseq = oseq;
        vo->first_bad_seq = seq;
    }
    if (!vo->followed)
        return 0;
    if (oseq != vo->t.leaves + 1) {
        /* Its leaves no longer line up with positions: the tree is not followed further. */
        vo->followed = false;
        vo->broken_at = vo->t.leaves + 1;
        if (!reported && !v->order_broken) {
            if (oseq <= vo->t.leaves)
                problem(v, seq, "origin", "event %llu repeats origin %s's event #%llu",
                        (unsigned long long)seq, origin, (unsigned long long)oseq);
            else
                problem(v, seq, "origin", "origin %s's events jump from #%llu to #%llu at "
                        "event %llu: some of that origin's events are missing here", origin,
                        (unsigned long long)vo->t.leaves, (unsigned long long)oseq,
                        (unsigned long long)seq);
        }
        return 0;
    }
    return verify_append(v, &vo->t, vo, seq, leaf, bad);
}

static int json_hash(json_t *o, const char *key, uint8_t out[AUDIT_HASH_LEN])
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && hex_decode(s, strlen(s), out, AUDIT_HASH_LEN) == 0 ? 0 : ARCA_E_INVALID;
}

/*
 * Checks one stored event (key seq, the record's bytes) and feeds its leaves
 * to the recomputed trees.  One problem at most per event: the most telling one.
 */
static int verify_event(struct verifier *v, uint64_t seq, const char *val, size_t len)
{
    uint8_t leaf[AUDIT_HASH_LEN], stored_leaf[AUDIT_HASH_LEN], prev[AUDIT_HASH_LEN];
    uint8_t hash[AUDIT_HASH_LEN], computed[AUDIT_HASH_LEN];
    char ctx_origin[AUDIT_ORIGIN_MAX + 1];
    json_error_t jerr;
    char *canon = NULL;
    bool bad = true, leaf_bad = false, hash_known = false;
    uint64_t problems_before = v->rep->problem_count;
    int rc = 0;
    json_t *rec = json_loadb(val, len, 0, &jerr);
    if (json_is_object(rec) && origin_fields(rec, ctx_origin, &v->ctx_oseq))
        v->ctx_origin = ctx_origin;
    else
        v->order_broken = true; /* some origin's sequence has a hole here: said for this event */

    audit_hash_leaf(val, len, leaf);
    int lrc = v->tree_ok ? mtree_node(&v->t.r, 0, seq - 1, stored_leaf) : ARCA_E_NOTFOUND;
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
        audit_sha256_parts(prev, AUDIT_HASH_LEN, canon, strlen(canon), NULL, 0, computed);
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
    if (v->tree_ok && (rc = verify_append(v, &v->t, NULL, seq, leaf, leaf_bad || bad)) != 0)
        goto out;
    if (json_is_object(rec))
        rc = verify_origin_event(v, seq, rec, v->rep->problem_count > problems_before);
out:
    v->ctx_origin = NULL;
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
    int rc = read_counters(&v->t.r, &sc);
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
        if (mtree_size(&v->t.r, &tsize) != 0 || tsize != want)
            problem(v, 0, "merkle", "the Merkle tree's size record says %llu events, the "
                    "counters %llu", (unsigned long long)tsize, (unsigned long long)want);
    }
    if (v->tree_ok) {
        frontier_root(&v->t, rep->root);
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
    if (cp->tree != AUDIT_TREE_LOCAL) {
        problem(v, 0, "checkpoint", "the checkpoint is of origin %s's tree, not of this log "
                "(GET /api/v1/audit/origins checks origin checkpoints)", cp->origin);
        return;
    }
    if (!rep->checkpoint_signature_ok)
        problem(v, 0, "checkpoint", "the checkpoint's signature does not verify");
    if (trusted_key && memcmp(trusted_key, cp->public_key, 32) != 0)
        problem(v, 0, "checkpoint", "the checkpoint is signed by key %s, not by this data "
                "directory's audit key", cp->key_id);
    if (strcmp(cp->origin, v->t.r.db->centre) != 0)
        problem(v, 0, "checkpoint", "the checkpoint is for centre '%s', this log is centre '%s'",
                cp->origin, v->t.r.db->centre);
    if (cp->size > rep->size) {
        problem(v, rep->size + 1, "checkpoint", "the checkpoint covers %llu events but the log "
                "holds only %llu: events were removed", (unsigned long long)cp->size,
                (unsigned long long)rep->size);
        return;
    }
    if (cp->size == 0 && !v->t.cp_root_known) {
        audit_empty_root(v->t.cp_root);
        v->t.cp_root_known = true;
    }
    if (!v->t.cp_root_known) {
        problem(v, 0, "checkpoint", "the log's first %llu events cannot be recomputed (one is "
                "missing or out of place), so it does not extend the checkpoint",
                (unsigned long long)cp->size);
        return;
    }
    rep->checkpoint_extended = memcmp(v->t.cp_root, cp->root, AUDIT_HASH_LEN) == 0;
    if (!rep->checkpoint_extended) {
        hex_encode(cp->root, AUDIT_HASH_LEN, want);
        hex_encode(v->t.cp_root, AUDIT_HASH_LEN, got);
        problem(v, 0, "checkpoint", "the log's first %llu events have root %.16s..., the "
                "checkpoint says %.16s...: the log was rewritten", (unsigned long long)cp->size,
                got, want);
    }
}

/*
 * Before the scan: an entry for this centre and every origin with a tree
 * (size records) or an accepted checkpoint, so that a tree or checkpoint whose events are all gone
 * is still looked at, and each checkpoint's root is caught as its origin's
 * recomputed tree passes its size.
 */
static int verify_origins_load(struct verifier *v)
{
    const struct reader *r = &v->t.r;
    char *err = NULL;
    int rc = 0;
    struct vorigin *vo;
    if (r->db->centre[0] && (rc = vorigin_get(v, r->db->centre, &vo)) != 0)
        return rc;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db->db, r->ro, r->db->cf[CF_OMERKLE]);
    for (rocksdb_iter_seek(it, "s", 1); rocksdb_iter_valid(it) && rc == 0;
         rocksdb_iter_next(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        char origin[AUDIT_ORIGIN_MAX + 1];
        if (kl == 0 || k[0] != 's')
            break;
        if (kl < 2 || kl - 1 > AUDIT_ORIGIN_MAX || memchr(k + 1, '\0', kl - 1)) {
            problem(v, 0, "origin", "a size record of %zu bytes among the per-origin trees "
                    "(apply writes 's' and a centre id)", kl);
            continue;
        }
        memcpy(origin, k + 1, kl - 1);
        origin[kl - 1] = '\0';
        rc = vorigin_get(v, origin, &vo);
    }
    rocksdb_iter_get_error(it, &err);
    if (err && rc == 0)
        rc = db_error("iterate per-origin trees", err);
    else if (err)
        rocksdb_free(err);
    rocksdb_iter_destroy(it);
    if (rc != 0)
        return rc;

    it = rocksdb_create_iterator_cf(r->db->db, r->ro, r->db->cf[CF_OCHECKPOINTS]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it) && rc == 0;
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *val = rocksdb_iter_value(it, &vl);
        char origin[AUDIT_ORIGIN_MAX + 1];
        struct ocp_record rec;
        bool ok = kl > 0 && kl <= AUDIT_ORIGIN_MAX && !memchr(k, '\0', kl);
        if (ok) {
            memcpy(origin, k, kl);
            origin[kl] = '\0';
            ok = ocp_decode(val, vl, &rec) == 0 && strcmp(rec.cp.origin, origin) == 0;
        }
        if (!ok) {
            problem(v, 0, "origin", "an accepted-checkpoint record (key of %zu bytes) is "
                    "malformed or filed under another origin", kl);
            continue;
        }
        if ((rc = vorigin_get(v, origin, &vo)) != 0 || !vo)
            continue;
        vo->has_cp = true;
        vo->ocp = rec;
        vo->t.cp_size = rec.cp.size;
    }
    rocksdb_iter_get_error(it, &err);
    if (err && rc == 0)
        rc = db_error("iterate accepted checkpoints", err);
    else if (err)
        rocksdb_free(err);
    rocksdb_iter_destroy(it);
    return rc;
}

static int vorigin_cmp(const void *a, const void *b)
{
    return strcmp((*(struct vorigin *const *)a)->origin, (*(struct vorigin *const *)b)->origin);
}

/* After the scan: one origin's size record and accepted checkpoint, and its line in the report. */
static int verify_origin_end(struct verifier *v, struct vorigin *vo)
{
    struct audit_report *rep = v->rep;
    struct audit_origin_result res;
    const struct audit_checkpoint *cp = &vo->ocp.cp;
    char got[65], want[65];
    uint64_t stored = 0;
    memset(&res, 0, sizeof(res));
    snprintf(res.origin, sizeof(res.origin), "%s", vo->origin);
    res.events = vo->count;
    res.verified = -1;
    v->ctx_origin = vo->origin;
    v->ctx_oseq = 0;
    int rc = mtree_size(&vo->t.r, &stored);
    if (rc == ARCA_E_DB)
        return rc;
    /* After a gap in the log itself, the origins' counts follow from it: said once already. */
    if (!v->order_broken && (rc != 0 || stored != vo->highest))
        problem(v, 0, "origin", "origin %s's Merkle tree says it holds %llu events, the log "
                "holds its events up to #%llu", vo->origin, (unsigned long long)stored,
                (unsigned long long)vo->highest);
    if (vo->followed) {
        frontier_root(&vo->t, res.root);
        res.root_known = true;
    }
    if (vo->has_cp) {
        res.checkpoint = true;
        res.cp_size = cp->size;
        memcpy(res.cp_root, cp->root, AUDIT_HASH_LEN);
        snprintf(res.cp_key_id, sizeof(res.cp_key_id), "%s", cp->key_id);
        snprintf(res.cp_time, sizeof(res.cp_time), "%s", cp->time);
        if (cp->size == 0 && !vo->t.cp_root_known) {
            audit_empty_root(vo->t.cp_root);
            vo->t.cp_root_known = true;
        }
        if (!audit_checkpoint_signature_ok(cp) || cp->tree != AUDIT_TREE_ORIGIN ||
            memcmp(cp->public_key, vo->ocp.public_key, 32) != 0) {
            res.verified = 0;
            problem(v, 0, "origin", "the accepted checkpoint of origin %s does not verify with "
                    "its pinned key %s: the record was altered", vo->origin, vo->ocp.key_id);
        } else if (vo->t.cp_root_known) {
            res.verified = memcmp(vo->t.cp_root, cp->root, AUDIT_HASH_LEN) == 0;
            if (!res.verified) {
                hex_encode(vo->t.cp_root, AUDIT_HASH_LEN, got);
                hex_encode(cp->root, AUDIT_HASH_LEN, want);
                bool named = vo->first_bad_oseq && vo->first_bad_oseq <= cp->size;
                v->ctx_oseq = named ? vo->first_bad_oseq : 0;
                if (named)
                    problem(v, vo->first_bad_seq, "origin", "origin %s's first %llu events here "
                            "have root %.16s..., its signed checkpoint says %.16s...: its "
                            "history differs here, first at its event #%llu (event %llu)",
                            vo->origin, (unsigned long long)cp->size, got, want,
                            (unsigned long long)vo->first_bad_oseq,
                            (unsigned long long)vo->first_bad_seq);
                else
                    problem(v, 0, "origin", "origin %s's first %llu events here have root "
                            "%.16s..., its signed checkpoint says %.16s...: its history differs "
                            "here (rewritten with matching hashes: compare its events with that "
                            "centre's log)", vo->origin, (unsigned long long)cp->size, got, want);
            }
        } else if (!vo->followed && vo->broken_at <= cp->size) {
            res.verified = 0;
            problem(v, 0, "origin", "origin %s's first %llu events cannot be recomputed here (they "
                    "are out of order from its event #%llu), so its signed checkpoint cannot be "
                    "checked", vo->origin, (unsigned long long)cp->size,
                    (unsigned long long)vo->broken_at);
        }
        /* Otherwise this centre does not hold cp->size of its events yet: unknown. */
    }
    v->ctx_origin = NULL;
    rep->origin_count++;
    if (rep->norigins < AUDIT_ORIGINS_MAX)
        rep->origins[rep->norigins++] = res;
    return 0;
}

static int verify_origins_end(struct verifier *v)
{
    int rc = 0;
    if (v->norigins > 1)
        qsort(v->origins, v->norigins, sizeof(*v->origins), vorigin_cmp);
    for (size_t i = 0; i < v->norigins && rc == 0; i++)
        rc = verify_origin_end(v, v->origins[i]);
    return rc;
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
    mtree_local(&v->local);
    v->t.r = (struct reader){db, ro, &v->local};
    v->t.cp_size = cp ? cp->size : UINT64_MAX;
    v->rep = rep;
    v->cp = cp;
    v->tree_ok = true;
    v->prev_known = true; /* the first event's prev is 32 zero bytes */
    if ((rc = verify_origins_load(v)) != 0)
        goto out;
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
    rc = verify_origins_end(v);
out:
    if (it)
        rocksdb_iter_destroy(it);
    if (snap)
        rocksdb_release_snapshot(db->db, snap);
    rocksdb_readoptions_destroy(ro);
    if (v) {
        for (size_t i = 0; i < v->norigins; i++)
            free(v->origins[i]);
        free(v->origins);
    }
    free(v);
    return rc;
}

static json_t *hash_or_null(bool known, const uint8_t h[AUDIT_HASH_LEN])
{
    char hex[65];
    if (!known)
        return json_null();
    hex_encode(h, AUDIT_HASH_LEN, hex);
    return json_string(hex);
}

static json_t *verified_json(int verified)
{
    return verified < 0 ? json_null() : json_boolean(verified);
}

json_t *audit_report_json(const struct audit_report *rep, const struct audit_checkpoint *cp)
{
    char hex[65];
    json_t *problems = json_array(), *origins = json_array(), *o = json_object();
    if (!problems || !origins || !o) {
        json_decref(problems);
        json_decref(origins);
        json_decref(o);
        return NULL;
    }
    for (size_t i = 0; i < rep->nproblems; i++) {
        const struct audit_problem *p = &rep->problems[i];
        json_t *pj = json_pack("{s:I,s:s,s:s}", "seq", (json_int_t)p->seq, "kind", p->kind,
                               "message", p->message);
        if (pj && p->origin[0]) {
            json_object_set_new(pj, "origin", json_string(p->origin));
            json_object_set_new(pj, "origin_seq", json_integer((json_int_t)p->origin_seq));
        }
        json_array_append_new(problems, pj);
    }
    for (size_t i = 0; i < rep->norigins; i++) {
        const struct audit_origin_result *r = &rep->origins[i];
        json_t *c = json_null();
        if (r->checkpoint)
            c = json_pack("{s:I,s:o,s:s,s:s}", "size", (json_int_t)r->cp_size, "root",
                          hash_or_null(true, r->cp_root), "key_id", r->cp_key_id, "time",
                          r->cp_time);
        json_array_append_new(origins,
                              json_pack("{s:s,s:I,s:o,s:o,s:o}", "origin", r->origin, "events",
                                        (json_int_t)r->events, "root",
                                        hash_or_null(r->root_known, r->root), "checkpoint", c,
                                        "verified", verified_json(r->verified)));
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
    json_object_set_new(o, "origin_count", json_integer((json_int_t)rep->origin_count));
    json_object_set_new(o, "origins", origins);
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
