/*
 * Origin checkpoints (audit.h, "per-origin trees and origin checkpoints"):
 * this centre's signed checkpoints of its own origin's tree, and the latest
 * checkpoint it accepted from every other origin, with that origin's key
 * pinned on first sight.
 *
 * cf ocheckpoints, key origin, value JSON:
 *   {public_key (hex of the raw Ed25519 key, pinned), key_id, pinned (time),
 *    accepted (time), checkpoint (the signed checkpoint JSON as accepted)}
 * The record is bookkeeping, not an event: it is what this centre has seen
 * of other origins, not state that replicates (peers fetch the checkpoints
 * themselves, from any centre, and check them on their own).  Writes are
 * serialized with apply (its mutex), so a checkpoint waiting for its events
 * is checked by apply exactly when the events complete its size (audit.c).
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

/* ---- the stored record ------------------------------------------------------------ */

static bool time_field(const char *s)
{
    return s && s[0] && strlen(s) < 32;
}

int ocp_decode(const char *v, size_t len, struct ocp_record *rec)
{
    const char *why = NULL;
    int rc = ARCA_E_CORRUPT;
    json_t *o = json_loadb(v, len, 0, NULL);
    memset(rec, 0, sizeof(*rec));
    const char *pk = json_string_value(json_object_get(o, "public_key"));
    const char *id = json_string_value(json_object_get(o, "key_id"));
    const char *pinned = json_string_value(json_object_get(o, "pinned"));
    const char *accepted = json_string_value(json_object_get(o, "accepted"));
    if (pk && strlen(pk) == 64 && hex_decode(pk, 64, rec->public_key, 32) == 0 && id &&
        strlen(id) == 16 && time_field(pinned) && time_field(accepted) &&
        checkpoint_from_json(json_object_get(o, "checkpoint"), &rec->cp, &why) == 0 &&
        rec->cp.tree == AUDIT_TREE_ORIGIN) {
        memcpy(rec->key_id, id, 17);
        snprintf(rec->pinned, sizeof(rec->pinned), "%s", pinned);
        snprintf(rec->accepted, sizeof(rec->accepted), "%s", accepted);
        rc = 0;
    }
    json_decref(o);
    if (rc != 0)
        memset(rec, 0, sizeof(*rec));
    return rc;
}

int ocp_get(const struct reader *r, const char *origin, struct ocp_record *rec, bool *found)
{
    char *err = NULL;
    size_t len = 0;
    *found = false;
    char *v = rocksdb_get_cf(r->db->db, r->ro, r->db->cf[CF_OCHECKPOINTS], origin,
                             strlen(origin), &len, &err);
    if (err)
        return db_error("get origin checkpoint", err);
    if (!v)
        return 0;
    int rc = ocp_decode(v, len, rec);
    rocksdb_free(v);
    if (rc != 0)
        LOG_E("audit: the accepted-checkpoint record of origin %s is malformed (run `arcad "
              "audit verify`)", origin);
    else
        *found = true;
    return rc;
}

static int ocp_put(repo_db *db, const struct ocp_record *rec)
{
    char pk[65], *err = NULL;
    int rc = -ENOMEM;
    hex_encode(rec->public_key, 32, pk);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:o}", "public_key", pk, "key_id", rec->key_id,
                          "pinned", rec->pinned, "accepted", rec->accepted, "checkpoint",
                          audit_checkpoint_json(&rec->cp));
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (text) {
        rocksdb_put_cf(db->db, db->wopts, db->cf[CF_OCHECKPOINTS], rec->cp.origin,
                       strlen(rec->cp.origin), text, strlen(text), &err);
        rc = err ? db_error("put origin checkpoint", err) : 0;
    }
    free(text);
    json_decref(o);
    return rc;
}

/* ---- this centre's own checkpoint ------------------------------------------------- */

int audit_origin_checkpoint_make(repo_db *db, const audit_signer *s, struct audit_checkpoint *cp)
{
    struct mtree t;
    int rc;
    memset(cp, 0, sizeof(*cp));
    if (mtree_origin(&t, db->centre) != 0)
        return ARCA_E_INVALID; /* an index opened without a centre id */
    struct reader r = {db, db->ropts, &t};
    cp->tree = AUDIT_TREE_ORIGIN;
    snprintf(cp->origin, sizeof(cp->origin), "%s", db->centre);
    /* Nodes are final and the size only grows: the root at the size read is always there. */
    if ((rc = mtree_size(&r, &cp->size)) != 0 || (rc = mtree_root(&r, cp->size, cp->root)) != 0)
        return rc == ARCA_E_NOTFOUND ? ARCA_E_CORRUPT : rc;
    return checkpoint_sign(s, cp);
}

int audit_origin_checkpoints(repo_db *db, const audit_signer *s, json_t **out)
{
    struct audit_checkpoint own;
    char *err = NULL;
    json_t *arr = json_array();
    int rc = audit_origin_checkpoint_make(db, s, &own);
    *out = NULL;
    if (!arr) {
        rc = -ENOMEM;
        goto out;
    }
    if (rc != 0)
        goto out;
    if (json_array_append_new(arr, audit_checkpoint_json(&own)) != 0) {
        rc = -ENOMEM;
        goto out;
    }
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->db, db->ropts,
                                                        db->cf[CF_OCHECKPOINTS]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it) && rc == 0;
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        struct ocp_record rec;
        if (kl == strlen(db->centre) && memcmp(k, db->centre, kl) == 0)
            continue; /* never accepted; this centre's own comes fresh, first */
        if (ocp_decode(v, vl, &rec) != 0 || strlen(rec.cp.origin) != kl ||
            memcmp(rec.cp.origin, k, kl) != 0) {
            LOG_W("audit: not serving a malformed accepted-checkpoint record (key of %zu bytes; "
                  "run `arcad audit verify`)", kl);
            continue;
        }
        if (json_array_append_new(arr, audit_checkpoint_json(&rec.cp)) != 0)
            rc = -ENOMEM;
    }
    rocksdb_iter_get_error(it, &err);
    if (err && rc == 0)
        rc = db_error("iterate origin checkpoints", err);
    else if (err)
        rocksdb_free(err);
    rocksdb_iter_destroy(it);
    if (rc == 0) {
        *out = arr;
        arr = NULL;
    }
out:
    json_decref(arr);
    return rc;
}

/* ---- accepting a peer's -------------------------------------------------------------- */

static void say(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    if (!why || whylen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

int audit_origin_checkpoint_accept(repo_db *db, json_t *j, char *why, size_t whylen)
{
    struct audit_checkpoint cp;
    struct ocp_record cur, next;
    const char *w = NULL;
    char got[65], want[65], now[32];
    uint8_t root[AUDIT_HASH_LEN];
    uint64_t held = 0;
    bool found = false;
    int rc;

    say(why, whylen, "%s", "");
    if (checkpoint_from_json(j, &cp, &w) != 0) {
        say(why, whylen, "%s", w);
        return ARCA_E_INVALID;
    }
    if (cp.tree != AUDIT_TREE_ORIGIN) {
        say(why, whylen, "not an origin checkpoint (\"tree\" must be \"origin\"): a checkpoint "
            "of %s's local log", cp.origin);
        return ARCA_E_INVALID;
    }
    if (!audit_checkpoint_signature_ok(&cp)) {
        say(why, whylen, "origin %s's checkpoint of size %llu: the signature does not verify "
            "with its public_key (or key_id is not that key's)", cp.origin,
            (unsigned long long)cp.size);
        return ARCA_E_INVALID;
    }
    if (strcmp(cp.origin, db->centre) == 0)
        return 0; /* this centre's own history is what it signs itself */
    if (db->readonly) {
        say(why, whylen, "the index is open read-only");
        return ARCA_E_DB;
    }
    struct reader plain = {db, db->ropts, NULL};
    pthread_mutex_lock(&db->apply_mu);
    if ((rc = ocp_get(&plain, cp.origin, &cur, &found)) != 0) {
        say(why, whylen, "the stored checkpoint record of origin %s cannot be read", cp.origin);
        rc = ARCA_E_DB;
        goto out;
    }
    if (found && memcmp(cur.public_key, cp.public_key, 32) != 0) {
        LOG_E("audit: refused a checkpoint of origin %s signed with key %s: that origin's key "
              "is %s, pinned on %s", cp.origin, cp.key_id, cur.key_id, cur.pinned);
        say(why, whylen, "origin %s's checkpoints are signed with key %s (pinned on %s); this "
            "one is signed with key %s", cp.origin, cur.key_id, cur.pinned, cp.key_id);
        rc = ARCA_E_CONFLICT;
        goto out;
    }
    if ((rc = audit_origin_size(db, cp.origin, &held)) != 0 ||
        (cp.size <= held && (rc = audit_origin_root(db, cp.origin, cp.size, root)) != 0)) {
        say(why, whylen, "origin %s's tree here cannot be read: %s", cp.origin,
            arca_strerror(rc));
        rc = ARCA_E_DB;
        goto out;
    }
    if (cp.size <= held && memcmp(root, cp.root, AUDIT_HASH_LEN) != 0) {
        hex_encode(root, AUDIT_HASH_LEN, got);
        hex_encode(cp.root, AUDIT_HASH_LEN, want);
        LOG_E("audit: origin %s's first %llu events here have root %.16s..., its signed "
              "checkpoint (key %s, %s) says %.16s...: that origin's history differs here", 
              cp.origin, (unsigned long long)cp.size, got, cp.key_id, cp.time, want);
        say(why, whylen, "origin %s's first %llu events here have root %.16s..., the checkpoint "
            "says %.16s...: that origin's history differs here", cp.origin,
            (unsigned long long)cp.size, got, want);
        rc = ARCA_E_CONFLICT;
        goto out;
    }
    if (found && cp.size == cur.cp.size && memcmp(cp.root, cur.cp.root, AUDIT_HASH_LEN) != 0) {
        hex_encode(cur.cp.root, AUDIT_HASH_LEN, got);
        hex_encode(cp.root, AUDIT_HASH_LEN, want);
        LOG_E("audit: origin %s signed two different roots for its first %llu events (%.16s... "
              "accepted %s, %.16s... now): it forked its history", cp.origin,
              (unsigned long long)cp.size, got, cur.accepted, want);
        say(why, whylen, "origin %s already signed root %.16s... for its first %llu events; this "
            "checkpoint says %.16s...", cp.origin, got, (unsigned long long)cp.size, want);
        rc = ARCA_E_CONFLICT;
        goto out;
    }
    if (found && (cp.size < cur.cp.size ||
                  (cp.size == cur.cp.size && strcmp(cp.time, cur.cp.time) <= 0)))
        goto out; /* not newer: what is kept already covers it */
    time_format_iso(time_now_ms(), now);
    if (found) {
        next = cur;
    } else {
        memset(&next, 0, sizeof(next));
        memcpy(next.public_key, cp.public_key, 32);
        memcpy(next.key_id, cp.key_id, sizeof(next.key_id));
        memcpy(next.pinned, now, sizeof(next.pinned));
    }
    next.cp = cp;
    memcpy(next.accepted, now, sizeof(next.accepted));
    if ((rc = ocp_put(db, &next)) != 0) {
        say(why, whylen, "storing the checkpoint failed: %s", arca_strerror(rc));
        rc = rc == -ENOMEM ? rc : ARCA_E_DB;
        goto out;
    }
    if (!found)
        LOG_I("audit: pinned origin %s's checkpoint key %s (first sight)", cp.origin, cp.key_id);
    if (cp.size > held)
        LOG_D("audit: origin %s's checkpoint covers %llu events, %llu are here: checked as they "
              "arrive", cp.origin, (unsigned long long)cp.size, (unsigned long long)held);
out:
    pthread_mutex_unlock(&db->apply_mu);
    return rc;
}

/* ---- the status of every origin --------------------------------------------------------- */

static json_t *hex_hash(const uint8_t h[AUDIT_HASH_LEN])
{
    char hex[65];
    hex_encode(h, AUDIT_HASH_LEN, hex);
    return json_string(hex);
}

/* One entry of audit_origins.  0, ARCA_E_DB, -ENOMEM. */
static int origin_status(repo_db *db, const char *origin, json_t *arr)
{
    struct mtree t;
    struct ocp_record rec;
    uint8_t root[AUDIT_HASH_LEN], at[AUDIT_HASH_LEN];
    char reason[256] = "", got[65], want[65];
    uint64_t size = 0;
    bool found = false, self = strcmp(origin, db->centre) == 0;
    json_t *verified = json_null(), *cpj = json_null();
    if (mtree_origin(&t, origin) != 0)
        return 0;
    struct reader r = {db, db->ropts, &t};
    int src = mtree_size(&r, &size), rrc = src, orc;
    if (src == ARCA_E_DB)
        return src;
    if (src == 0)
        rrc = mtree_root(&r, size, root);
    if (rrc == ARCA_E_DB)
        return rrc;
    orc = ocp_get(&r, origin, &rec, &found);
    if (orc == ARCA_E_DB)
        return orc;

    if (self) {
        snprintf(reason, sizeof(reason), "this centre's own origin: it signs its checkpoints "
                 "(GET /api/v1/audit/origins/checkpoints)");
    } else if (orc != 0) {
        verified = json_false();
        snprintf(reason, sizeof(reason), "the accepted-checkpoint record is malformed (run "
                 "verify)");
    } else if (!found) {
        snprintf(reason, sizeof(reason), "no checkpoint of origin %s accepted yet", origin);
    } else {
        cpj = json_pack("{s:I,s:o,s:s,s:s,s:s}", "size", (json_int_t)rec.cp.size, "root",
                        hex_hash(rec.cp.root), "key_id", rec.cp.key_id, "time", rec.cp.time,
                        "accepted", rec.accepted);
        int arc = src;
        if (!audit_checkpoint_signature_ok(&rec.cp) ||
            memcmp(rec.cp.public_key, rec.public_key, 32) != 0) {
            verified = json_false();
            snprintf(reason, sizeof(reason), "the accepted checkpoint does not verify with the "
                     "pinned key %s: its record was altered", rec.key_id);
        } else if (src == 0 && rec.cp.size > size) {
            snprintf(reason, sizeof(reason), "%llu of the %llu events the checkpoint covers are "
                     "here yet", (unsigned long long)size, (unsigned long long)rec.cp.size);
        } else if (src != 0 || (arc = mtree_root(&r, rec.cp.size, at)) != 0) {
            if (arc == ARCA_E_DB) {
                json_decref(cpj);
                return arc;
            }
            verified = json_false();
            snprintf(reason, sizeof(reason), "origin %s's tree here is damaged (run verify)",
                     origin);
        } else if (memcmp(at, rec.cp.root, AUDIT_HASH_LEN) != 0) {
            verified = json_false();
            hex_encode(at, AUDIT_HASH_LEN, got);
            hex_encode(rec.cp.root, AUDIT_HASH_LEN, want);
            snprintf(reason, sizeof(reason), "its first %llu events here have root %.16s..., its "
                     "checkpoint says %.16s...: that origin's history differs here",
                     (unsigned long long)rec.cp.size, got, want);
        } else {
            verified = json_true();
        }
    }
    json_t *o = json_pack("{s:s,s:b,s:I,s:o,s:o,s:o,s:o,s:o}", "origin", origin, "self", self,
                          "events", (json_int_t)size, "root",
                          rrc == 0 ? hex_hash(root) : json_null(), "key_id",
                          found ? json_string(rec.key_id) : json_null(), "pinned",
                          found ? json_string(rec.pinned) : json_null(), "checkpoint", cpj,
                          "verified", verified);
    if (o && reason[0] && !json_is_true(json_object_get(o, "verified")))
        json_object_set_new(o, "reason", json_string(reason));
    return o && json_array_append_new(arr, o) == 0 ? 0 : -ENOMEM;
}

/* Appends the origins whose keys cf holds (after the key's first plen bytes, from seek on). */
static int collect_origins(repo_db *db, enum repo_cf cf, const char *seek, size_t plen,
                           json_t *names)
{
    char *err = NULL, origin[AUDIT_ORIGIN_MAX + 1];
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->db, db->ropts, db->cf[cf]);
    for (rocksdb_iter_seek(it, seek, plen); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < plen || memcmp(k, seek, plen) != 0)
            break;
        if (kl == plen || kl - plen > AUDIT_ORIGIN_MAX || memchr(k + plen, '\0', kl - plen))
            continue; /* verify names what apply did not write */
        memcpy(origin, k + plen, kl - plen);
        origin[kl - plen] = '\0';
        json_object_set_new(names, origin, json_true());
    }
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    return err ? db_error("iterate origins", err) : 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int audit_origins(repo_db *db, json_t **out)
{
    json_t *names = json_object(), *arr = json_array();
    const char **sorted = NULL;
    const char *key;
    json_t *val;
    size_t n = 0;
    int rc = -ENOMEM;
    *out = NULL;
    if (!names || !arr)
        goto out;
    /* This centre, and every origin with a tree (size records 's' origin) or a checkpoint. */
    if (db->centre[0])
        json_object_set_new(names, db->centre, json_true());
    if ((rc = collect_origins(db, CF_OMERKLE, "s", 1, names)) != 0 ||
        (rc = collect_origins(db, CF_OCHECKPOINTS, "", 0, names)) != 0)
        goto out;
    rc = -ENOMEM;
    if (!(sorted = calloc(json_object_size(names) + 1, sizeof(*sorted))))
        goto out;
    json_object_foreach(names, key, val)
        sorted[n++] = key;
    qsort(sorted, n, sizeof(*sorted), name_cmp);
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = origin_status(db, sorted[i], arr);
    if (rc != 0)
        goto out;
    *out = json_pack("{s:s,s:O}", "centre", db->centre, "origins", arr);
    rc = *out ? 0 : -ENOMEM;
out:
    free(sorted);
    json_decref(names);
    json_decref(arr);
    return rc;
}
