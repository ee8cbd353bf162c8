/*
 * The event log and apply: the only code that writes the index.
 *
 * An operation (repo_put_artifact, later promotions, properties, deletions,
 * and replication's incoming events) describes its change as a struct event
 * and calls apply.  Under one mutex, apply asks the action's stage function
 * to validate the event against the current state and add the index changes
 * to a write batch; it then appends the event record (hash-chained to the
 * previous one) and the updated counters to the same batch and writes it
 * synced.  So the index, the log and the counters never disagree, and every
 * check-then-write decision is atomic.
 *
 * Event record (cf events, key BE64(local seq)), JSON:
 *   {seq, origin, origin_seq, hlc, actor, remote_addr, request_id, action,
 *    subject, details, prev, hash}
 * hash = hex SHA-256(prev hash bytes || canonical JSON of the record without
 * prev and hash), canonical meaning compact with sorted keys.  The first
 * event's prev is 32 zero bytes.
 */
#include "event_int.h"
#include "lifecycle.h"

#include "arca_err.h"
#include "hlc.h"
#include "log.h"
#include "token.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const event_action_names[EV_COUNT] = {
    [EV_ARTIFACT_PUT] = "artifact.put",
    [EV_TOKEN_CREATE] = "token.create",
    [EV_TOKEN_REVOKE] = "token.revoke",
    [EV_AUTH_FAILURE] = "auth.failure",
    [EV_VERSION_PROMOTE] = "version.promote",
    [EV_VERSION_REVOKE] = "version.revoke",
    [EV_VERSION_DELETE] = "version.delete",
    [EV_PROPERTY_SET] = "property.set",
    [EV_BUILD_PUT] = "build.put",
    [EV_DEPLOYMENT_RECORD] = "deployment.record",
};

/*
 * Copies an untrusted label (actor, address, request id) keeping printable
 * ASCII only, so the event JSON stays valid and its canonical form unambiguous.
 */
void clean_label(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src && src[i] && i + 1 < cap; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    dst[i] = '\0';
}

json_t *label_json(const char *s)
{
    char buf[ACTOR_FIELD_MAX];
    if (!s)
        return json_null();
    clean_label(buf, sizeof(buf), s);
    return json_string(buf);
}

json_t *hex_json(const uint8_t *b, size_t len)
{
    char hex[65];
    hex_encode(b, len, hex);
    return json_string(hex);
}

/*
 * Adds a put of an encoded record (malloc'd, freed here) to the batch.  The
 * length goes by pointer because the encoder sets it while the argument list
 * is evaluated, in an unspecified order.
 */
int batch_put(rocksdb_writebatch_t *b, repo_db *db, enum repo_cf cf, const char *k,
                     size_t kl, char *v, const size_t *vl)
{
    if (!v)
        return -ENOMEM;
    rocksdb_writebatch_put_cf(b, db->cf[cf], k, kl, v, *vl);
    free(v);
    return 0;
}

/*
 * Puts a {created_ms} record at key unless one exists with an earlier time:
 * the earliest write anywhere wins, so centres agree whatever the order.
 */
static int put_created_min(repo_db *db, rocksdb_writebatch_t *b, enum repo_cf cf,
                           const char *key, size_t klen, uint64_t now_ms)
{
    char *v = NULL;
    size_t vl = 0;
    uint64_t cur = 0;
    int rc = db_get(db, cf, key, klen, &v, &vl);
    if (rc == 0)
        rc = rec_created_decode(v, vl, &cur);
    rocksdb_free(v);
    if (rc == ARCA_E_NOTFOUND || (rc == 0 && now_ms < cur)) {
        vl = 0;
        rc = batch_put(b, db, cf, key, klen, rec_created_encode(now_ms, &vl), &vl);
    }
    return rc;
}

/* A coordinate that ever held this content (trace, search by checksum). */
static void put_blobref(repo_db *db, rocksdb_writebatch_t *b, const struct coord *c,
                        const uint8_t sha256[32], uint64_t seq)
{
    char rkey[32 + KEY_MAX];
    uint8_t be[8];
    memcpy(rkey, sha256, 32);
    size_t rlen = 32 + key_make(rkey + 32, false, c->repo, c->name, c->version, c->path);
    put_be64(be, seq);
    rocksdb_writebatch_put_cf(b, db->cf[CF_BLOBREFS], rkey, rlen, (const char *)be, 8);
}

/*
 * The loser of a replication conflict, kept visible: key = coordinate key
 * \0 loser origin \0 BE64(loser hlc).  The winner is whatever the artifact
 * record holds (it may change again when an earlier write arrives).
 */
static int put_conflict(repo_db *db, rocksdb_writebatch_t *b, const struct coord *c,
                        const struct blob_digests *dig, uint64_t hlc, const char *origin,
                        const char *actor)
{
    char key[KEY_MAX + 80], hex[65];
    size_t n = key_make(key, false, c->repo, c->name, c->version, c->path);
    size_t ol = strlen(origin);
    key[n++] = '\0';
    memcpy(key + n, origin, ol);
    n += ol;
    key[n++] = '\0';
    put_be64((uint8_t *)key + n, hlc);
    n += 8;
    hex_encode(dig->sha256, 32, hex);
    json_t *o = json_pack("{s:s,s:I,s:s,s:I,s:o}", "sha256", hex, "size", (json_int_t)dig->size,
                          "origin", origin, "hlc", (json_int_t)hlc, "actor", label_json(actor));
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (!text)
        return -ENOMEM;
    rocksdb_writebatch_put_cf(b, db->cf[CF_CONFLICTS], key, n, text, strlen(text));
    free(text);
    return 0;
}

/*
 * Makes sure the index knows blob dig (with its block sums when new): the
 * index's own record wins over the caller's digests.  A new blob is counted
 * in st's delta and *created says so.  ARCA_E_NOTFOUND when unknown and no
 * sums were given.
 */
static int ensure_blob(repo_db *db, rocksdb_writebatch_t *b, struct blob_digests *dig,
                       const struct blob_blocks *blocks, struct staged *st, bool *created)
{
    size_t reclen = 0;
    *created = false;
    int rc = repo_get_blob(db, dig->sha256, dig, NULL);
    if (rc != ARCA_E_NOTFOUND)
        return rc;
    uint64_t want = (dig->size + BLOB_BLOCK_SIZE - 1) / BLOB_BLOCK_SIZE;
    if (!blocks) {
        LOG_W("index: put of unknown blob without block sums");
        return ARCA_E_NOTFOUND; /* nothing names that content */
    }
    if (blocks->count != want || (blocks->count > 0 && !blocks->sums)) {
        LOG_W("index: block sums do not match the blob size");
        return ARCA_E_INVALID;
    }
    if ((rc = batch_put(b, db, CF_BLOBS, (const char *)dig->sha256, 32,
                        rec_blob_encode(dig, blocks, &reclen), &reclen)) != 0)
        return rc;
    rocksdb_writebatch_put_cf(b, db->cf[CF_SHA1], (const char *)dig->sha1, 20,
                              (const char *)dig->sha256, 32);
    st->delta.blob_count = 1;
    st->delta.stored_bytes = dig->size;
    *created = true;
    return 0;
}

/*
 * artifact.put: a coordinate is immutable.  Same content again is a no-op
 * (a safe retry); different content is a conflict.  Otherwise the artifact,
 * its blob (when new), its version, name and repository records are staged.
 *
 * From another centre (replication) a coordinate written in two centres with
 * different bytes is not refused: the earlier write by (HLC, origin) wins
 * everywhere and the other is kept as a conflict record.  Files reaching a
 * version already frozen or revoked here still land (they were acknowledged
 * there, concurrently); a deleted version's tombstone wins.
 */
static int stage_artifact_put(repo_db *db, const struct event *ev, uint64_t seq, uint64_t hlc,
                              rocksdb_writebatch_t *b, struct staged *st)
{
    const struct coord *c = ev->u.put.c;
    struct artifact *out = ev->u.put.out;
    const char *origin = event_origin(db, ev);
    const char *actor = ev->who && ev->who->actor ? ev->who->actor : "";
    char key[KEY_MAX], *v = NULL;
    size_t klen, vlen = 0, reclen = 0;
    bool new_blob = false, replace = false;
    uint64_t now_ms = HLC_MS(hlc), old_size = 0;
    struct version_state vs;
    int rc;

    memset(out, 0, sizeof(*out));
    out->coord = *c;
    klen = key_make(key, false, c->repo, c->name, c->version, c->path);
    rc = db_get(db, CF_ARTIFACTS, key, klen, &v, &vlen);
    if (rc == 0) {
        if ((rc = rec_artifact_decode(v, vlen, out)) != 0)
            goto out;
        out->coord = *c;
        bool same = memcmp(out->dig.sha256, ev->u.put.dig->sha256, 32) == 0;
        bool incoming_first = hlc_origin_cmp(hlc, origin, out->hlc, out->origin) < 0;
        if (same && !EV_REMOTE(ev)) {
            st->noop = true; /* a safe retry */
            goto out;
        }
        if (!same && !EV_REMOTE(ev)) {
            rc = ARCA_E_CONFLICT;
            goto out;
        }
        /*
         * From here on, a write from another centre.  Every write of a
         * coordinate but the earliest is kept as a conflict record, even with
         * the same bytes: which writes lost must not depend on arrival order.
         */
        if (!incoming_first) {
            /* The stored write is earlier: the incoming one is the loser, kept visible. */
            struct blob_digests ld = *ev->u.put.dig;
            if ((rc = ensure_blob(db, b, &ld, ev->u.put.blocks, st, &new_blob)) != 0)
                goto out;
            put_blobref(db, b, c, ld.sha256, seq);
            rc = put_conflict(db, b, c, &ld, hlc, origin, actor);
            st->noop = true;
            goto out;
        }
        /* The incoming write is earlier: it takes the record; the stored one lost. */
        if ((rc = put_conflict(db, b, c, &out->dig, out->hlc, out->origin, out->created_by)) != 0)
            goto out;
        replace = true;
        old_size = out->dig.size;
        memset(out, 0, sizeof(*out));
        out->coord = *c;
    } else if (rc != ARCA_E_NOTFOUND) {
        goto out;
    }
    /* A new file: the version must still take files (first stage, not revoked or deleted). */
    if ((rc = lifecycle_check_put(db, ev, c, &vs, ev->u.put.res)) != 0)
        goto out;
    if (vs.deleted_ms) {
        /* Remote, into a tombstone: only the facts every order agrees on. */
        struct blob_digests td = *ev->u.put.dig;
        if ((rc = ensure_blob(db, b, &td, ev->u.put.blocks, st, &new_blob)) != 0)
            goto out;
        put_blobref(db, b, c, td.sha256, seq);
        if (now_ms < vs.created_ms) {
            vs.created_ms = now_ms;
            if ((rc = put_version_state(db, b, c->repo, c->name, c->version, &vs)) != 0)
                goto out;
        }
        klen = key_make(key, false, c->repo, c->name, NULL, NULL);
        if ((rc = put_created_min(db, b, CF_NAMES, key, klen, now_ms)) == 0)
            rc = put_created_min(db, b, CF_REPOS, c->repo, strlen(c->repo), now_ms);
        st->noop = true;
        goto out;
    }

    /* The blob: the index's own record wins over the caller's digests when it has one. */
    out->dig = *ev->u.put.dig;
    if ((rc = ensure_blob(db, b, &out->dig, ev->u.put.blocks, st, &new_blob)) != 0)
        goto out;

    out->created_ms = now_ms;
    out->event_seq = seq;
    out->revoked = vs.revoked_ms != 0;
    out->hlc = hlc;
    snprintf(out->origin, sizeof(out->origin), "%s", origin);
    clean_label(out->created_by, sizeof(out->created_by), actor);
    if ((rc = batch_put(b, db, CF_ARTIFACTS, key, klen, rec_artifact_encode(out, &reclen),
                        &reclen)) != 0)
        goto out;

    /* The version: created by its earliest file, then counted. */
    if (!replace)
        vs.file_count++;
    vs.total_bytes += out->dig.size - old_size;
    if (vs.created_ms == 0 || now_ms < vs.created_ms) {
        if (vs.created_ms) {
            char tkey[KEY_MAX];
            rocksdb_writebatch_delete_cf(b, db->cf[CF_VTIME], tkey,
                                         vtime_key(tkey, c->repo, c->name, vs.created_ms,
                                                   c->version));
        }
        vs.created_ms = now_ms;
    }
    if ((rc = put_version_state(db, b, c->repo, c->name, c->version, &vs)) != 0)
        goto out;
    put_blobref(db, b, c, out->dig.sha256, seq);
    index_version_event(db, b, c->repo, c->name, c->version, seq, EV_ARTIFACT_PUT);

    klen = key_make(key, false, c->repo, c->name, NULL, NULL);
    if ((rc = put_created_min(db, b, CF_NAMES, key, klen, now_ms)) != 0)
        goto out;
    if ((rc = put_created_min(db, b, CF_REPOS, c->repo, strlen(c->repo), now_ms)) != 0)
        goto out;

    snprintf(st->subject, sizeof(st->subject), "%s/%s/%s/%s", c->repo, c->name, c->version,
             c->path);
    st->details = json_object();
    if (!st->details) {
        rc = -ENOMEM;
        goto out;
    }
    json_object_set_new(st->details, "repo", json_string(c->repo));
    json_object_set_new(st->details, "name", json_string(c->name));
    json_object_set_new(st->details, "version", json_string(c->version));
    json_object_set_new(st->details, "path", json_string(c->path));
    json_object_set_new(st->details, "sha256", hex_json(out->dig.sha256, 32));
    json_object_set_new(st->details, "sha1", hex_json(out->dig.sha1, 20));
    json_object_set_new(st->details, "md5", hex_json(out->dig.md5, 16));
    json_object_set_new(st->details, "size", json_integer((json_int_t)out->dig.size));
    json_object_set_new(st->details, "new_blob", json_boolean(new_blob));
    if (ev->u.put.props && json_object_size(ev->u.put.props) > 0 &&
        (rc = lifecycle_put_props(db, c, ev->u.put.props, seq, hlc,
                                  ev->origin ? ev->origin : db->centre, b, st->details)) != 0)
        goto out;
    /* Counters only add: a replaced file adds the size difference mod 2^64. */
    st->delta.artifact_count = replace ? 0 : 1;
    st->delta.logical_bytes = out->dig.size - old_size;
out:
    rocksdb_free(v);
    return rc;
}

/* token.create: a new id and a new secret hash; the record is stored as given. */
static int stage_token_create(repo_db *db, const struct event *ev, uint64_t hlc,
                              rocksdb_writebatch_t *b, struct staged *st)
{
    struct token *t = ev->u.tcreate.t;
    size_t len = 0;
    if (db_get(db, CF_TOKENS, t->id, strlen(t->id), NULL, NULL) != ARCA_E_NOTFOUND ||
        db_get(db, CF_TOKEN_HASH, (const char *)ev->u.tcreate.hash, 32, NULL, NULL) !=
            ARCA_E_NOTFOUND)
        return ARCA_E_EXISTS;
    t->created_ms = HLC_MS(hlc);
    t->revoked_ms = 0;
    clean_label(t->created_by, sizeof(t->created_by),
                ev->who && ev->who->actor ? ev->who->actor : "");
    int rc = batch_put(b, db, CF_TOKENS, t->id, strlen(t->id), rec_token_encode(t, &len), &len);
    if (rc != 0)
        return rc;
    rocksdb_writebatch_put_cf(b, db->cf[CF_TOKEN_HASH], (const char *)ev->u.tcreate.hash, 32,
                              t->id, strlen(t->id));
    json_t *scopes = json_array();
    for (size_t i = 0; i < t->nscopes; i++)
        json_array_append_new(scopes, json_string(t->scopes[i]));
    /* The hash (never the secret) travels with the event so that a replica can accept the token. */
    st->details = json_pack("{s:s,s:s,s:o,s:I,s:o}", "name", t->name, "owner", t->owner,
                            "scopes", scopes, "expires_ms", (json_int_t)t->expires_ms,
                            "secret_sha256", hex_json(ev->u.tcreate.hash, 32));
    snprintf(st->subject, sizeof(st->subject), "token/%s", t->id);
    return st->details ? 0 : -ENOMEM;
}

/* token.revoke: marks the record revoked; a revoked token stays for the audit trail. */
static int stage_token_revoke(repo_db *db, const struct event *ev, uint64_t hlc,
                              rocksdb_writebatch_t *b, struct staged *st)
{
    struct token t;
    size_t len = 0;
    int rc = repo_token_get(db, ev->u.trevoke.id, &t);
    if (rc != 0)
        return rc;
    /* Revoked in two centres: the earlier time is kept everywhere. */
    if (t.revoked_ms && !(EV_REMOTE(ev) && HLC_MS(hlc) < t.revoked_ms)) {
        st->noop = true;
    } else {
        t.revoked_ms = HLC_MS(hlc);
        if ((rc = batch_put(b, db, CF_TOKENS, t.id, strlen(t.id), rec_token_encode(&t, &len),
                            &len)) != 0)
            return rc;
        st->details = json_pack("{s:s}", "name", t.name);
        snprintf(st->subject, sizeof(st->subject), "token/%s", t.id);
    }
    if (ev->u.trevoke.out)
        *ev->u.trevoke.out = t;
    return 0;
}

/* auth.failure: nothing in the index changes; the event is the record. */
static int stage_auth_failure(const struct event *ev, struct staged *st)
{
    st->details = json_pack("{s:o,s:o}", "reason", label_json(ev->u.afail.reason), "token_id",
                            label_json(ev->u.afail.token_id));
    snprintf(st->subject, sizeof(st->subject), "auth");
    return st->details ? 0 : -ENOMEM;
}

/* hash = SHA-256(prev || canonical) */
static int chain_hash(const uint8_t prev[32], const char *canon, uint8_t hash[32])
{
    int rc = ARCA_E_CRYPTO;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, prev, 32) &&
        EVP_DigestUpdate(ctx, canon, strlen(canon)) && EVP_DigestFinal_ex(ctx, hash, NULL))
        rc = 0;
    EVP_MD_CTX_free(ctx);
    return rc;
}

/*
 * Applies one event: validate against the current state, then one synced
 * batch holding the index changes, the event record and the counters.
 * Returns 0 (the change is durable, or was already there: *applied tells
 * which), the stage function's refusal (ARCA_E_CONFLICT, ...), or ARCA_E_DB.
 */
const char *event_origin(const repo_db *db, const struct event *ev)
{
    return ev->origin ? ev->origin : db->centre;
}

int hlc_origin_cmp(uint64_t ha, const char *oa, uint64_t hb, const char *ob)
{
    if (ha != hb)
        return ha < hb ? -1 : 1;
    return strcmp(oa ? oa : "", ob ? ob : "");
}

int origin_last(repo_db *db, const char *origin, uint64_t *last)
{
    char *v = NULL;
    size_t vlen = 0;
    int rc = db_get(db, CF_ORIGINS, origin, strlen(origin), &v, &vlen);
    *last = 0;
    if (rc == ARCA_E_NOTFOUND)
        return 0;
    if (rc == 0 && vlen == 8)
        *last = get_be64((const uint8_t *)v);
    else if (rc == 0)
        rc = ARCA_E_DB;
    rocksdb_free(v);
    return rc;
}

int apply(repo_db *db, const struct event *ev, bool *applied)
{
    int rc = 0;
    rocksdb_writebatch_t *b = NULL;
    struct staged st;
    struct repo_counters nc;
    json_t *rec = NULL;
    char *canon = NULL, *text = NULL, *err = NULL;
    uint8_t seqkey[8];
    size_t clen = 0;
    uint64_t put_size = 0;
    bool is_put = false;

    memset(&st, 0, sizeof(st));
    *applied = false;
    pthread_mutex_lock(&db->apply_mu);
    if (db->readonly) {
        LOG_E("index: write to a read-only index");
        rc = ARCA_E_DB;
        goto out;
    }
    uint64_t seq = db->ctr.next_seq;
    uint64_t hlc = ev->hlc ? ev->hlc : hlc_now();
    uint64_t last = 0;
    const char *origin = event_origin(db, ev);
    if ((rc = origin_last(db, origin, &last)) != 0)
        goto out;
    /* This centre numbers its own events 1, 2, 3... apart from the relayed ones. */
    uint64_t origin_seq = EV_REMOTE(ev) ? ev->origin_seq : last + 1;
    if (EV_REMOTE(ev)) {
        /* Idempotent on (origin, origin seq); an origin's events apply in its order. */
        if (ev->origin_seq <= last)
            goto out; /* applied before: nothing to do */
        if (ev->origin_seq != last + 1) {
            LOG_W("index: event %s/%llu arrived before %s/%llu", origin,
                  (unsigned long long)ev->origin_seq, origin, (unsigned long long)(last + 1));
            rc = ARCA_E_INVALID;
            goto out;
        }
        hlc_observe(hlc);
    }
    b = rocksdb_writebatch_create();
    switch (ev->action) {
    case EV_ARTIFACT_PUT:
        rc = stage_artifact_put(db, ev, seq, hlc, b, &st);
        break;
    case EV_TOKEN_CREATE:
        rc = stage_token_create(db, ev, hlc, b, &st);
        break;
    case EV_TOKEN_REVOKE:
        rc = stage_token_revoke(db, ev, hlc, b, &st);
        break;
    case EV_AUTH_FAILURE:
        rc = stage_auth_failure(ev, &st);
        break;
    case EV_VERSION_PROMOTE:
    case EV_VERSION_REVOKE:
    case EV_VERSION_DELETE:
    case EV_PROPERTY_SET:
    case EV_BUILD_PUT:
    case EV_DEPLOYMENT_RECORD:
        rc = stage_version_op(db, ev, seq, hlc, b, &st);
        break;
    case EV_COUNT:
        rc = ARCA_E_INVALID;
        break;
    }
    if (EV_REMOTE(ev)) {
        /*
         * Another centre's event is always recorded, even when it changes
         * nothing here (already true, or lost to the merge rules): this log
         * relays it to centres that pull from us, and their per-origin
         * sequence must have no gap.  A refusal becomes a recorded no-op;
         * only an index failure stops it.
         */
        /*
         * An upload whose content is not here is not a refusal: recording it
         * as a no-op would lose the file at this centre for good.  It fails,
         * unrecorded, and the puller fetches the blob and tries again.
         */
        if (ev->action == EV_ARTIFACT_PUT && rc == ARCA_E_NOTFOUND)
            goto out;
        bool refused = rc == ARCA_E_CONFLICT || rc == ARCA_E_PRECONDITION ||
                       rc == ARCA_E_INVALID || rc == ARCA_E_NOTFOUND || rc == ARCA_E_EXISTS;
        if (refused) {
            rocksdb_writebatch_clear(b);
            memset(&st.delta, 0, sizeof(st.delta));
            rc = 0;
        }
        if (rc != 0)
            goto out;
        json_decref(st.details);
        st.details = json_incref(ev->remote_details);
        snprintf(st.subject, sizeof(st.subject), "%s", ev->remote_subject ? ev->remote_subject : "");
        st.noop = st.dry = false;
    }
    if (rc != 0 || st.noop || st.dry)
        goto out;
    {
        uint8_t be[8];
        put_be64(be, origin_seq);
        rocksdb_writebatch_put_cf(b, db->cf[CF_ORIGINS], origin, strlen(origin),
                                  (const char *)be, 8);
    }

    rec = json_object();
    if (!rec) {
        rc = -ENOMEM;
        goto out;
    }
    const struct actor_ctx *who = ev->who;
    json_object_set_new(rec, "seq", json_integer((json_int_t)seq));
    json_object_set_new(rec, "origin", json_string(origin));
    json_object_set_new(rec, "origin_seq", json_integer((json_int_t)origin_seq));
    json_object_set_new(rec, "hlc", json_integer((json_int_t)hlc));
    json_object_set_new(rec, "actor", label_json(who && who->actor ? who->actor : ""));
    json_object_set_new(rec, "remote_addr", label_json(who ? who->remote_addr : NULL));
    json_object_set_new(rec, "request_id", label_json(who ? who->request_id : NULL));
    json_object_set_new(rec, "action", json_string(event_action_names[ev->action]));
    json_object_set_new(rec, "subject", json_string(st.subject));
    json_object_set_new(rec, "details", st.details);
    st.details = NULL;
    canon = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    if (!canon) {
        rc = -ENOMEM;
        goto out;
    }

    nc = db->ctr;
    if ((rc = chain_hash(db->ctr.head, canon, nc.head)) != 0)
        goto out;
    json_object_set_new(rec, "prev", hex_json(db->ctr.head, 32));
    json_object_set_new(rec, "hash", hex_json(nc.head, 32));
    text = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text) {
        rc = -ENOMEM;
        goto out;
    }
    put_be64(seqkey, seq);
    rocksdb_writebatch_put_cf(b, db->cf[CF_EVENTS], (const char *)seqkey, 8, text, strlen(text));
    if ((rc = merkle_stage(db, b, seq, text, strlen(text))) != 0)
        goto out;
    is_put = ev->action == EV_ARTIFACT_PUT && ev->u.put.dig;
    if (is_put) {
        put_size = ev->u.put.dig->size;
        puts_stage(db, b, seq, put_size);
    }

    nc.next_seq = seq + 1;
    nc.st.blob_count += st.delta.blob_count;
    nc.st.stored_bytes += st.delta.stored_bytes;
    nc.st.artifact_count += st.delta.artifact_count;
    nc.st.logical_bytes += st.delta.logical_bytes;
    nc.st.event_count++;
    if ((rc = batch_put(b, db, CF_META, "state", 5, rec_counters_encode(&nc, &clen), &clen)) != 0)
        goto out;

    rocksdb_write(db->db, db->wopts, b, &err);
    if (err) {
        rc = db_error("write batch", err);
        goto out;
    }
    /* Only a durable batch moves the cached counters. */
    db->ctr = nc;
    if (is_put)
        puts_commit(db, put_size);
    *applied = true;
out:
    pthread_mutex_unlock(&db->apply_mu);
    json_decref(st.details);
    json_decref(rec);
    free(canon);
    free(text);
    if (b)
        rocksdb_writebatch_destroy(b);
    return rc;
}

int repo_put_artifact(repo_db *db, const struct coord *c, const struct blob_digests *dig,
                      const struct blob_blocks *blocks, const struct actor_ctx *who,
                      struct artifact *out, int *created)
{
    return repo_put_artifact_ex(db, c, dig, blocks, NULL, who, out, created, NULL);
}

int repo_put_artifact_ex(repo_db *db, const struct coord *c, const struct blob_digests *dig,
                         const struct blob_blocks *blocks, const json_t *props,
                         const struct actor_ctx *who, struct artifact *out, int *created,
                         struct op_result *res)
{
    const char *why;
    bool applied = false;
    int rc;
    struct event ev = {.action = EV_ARTIFACT_PUT, .who = who};

    *created = 0;
    if (coord_repo_check(c->repo, strlen(c->repo), &why) ||
        coord_segment_check(c->name, strlen(c->name), &why) ||
        coord_segment_check(c->version, strlen(c->version), &why) ||
        coord_path_check(c->path, strlen(c->path), &why)) {
        LOG_W("index: refusing put of an invalid coordinate: %s", why);
        rc = ARCA_E_INVALID;
        goto out;
    }
    ev.u.put.c = c;
    ev.u.put.dig = dig;
    ev.u.put.blocks = blocks;
    ev.u.put.props = props;
    ev.u.put.out = out;
    ev.u.put.res = res;
    rc = apply(db, &ev, &applied);
    if (rc == 0 && applied)
        *created = 1;
out:
    return rc;
}

int repo_token_create(repo_db *db, struct token *t, const uint8_t secret_hash[32],
                      const struct actor_ctx *who)
{
    bool applied = false;
    size_t n = strlen(t->id);
    if (n != TOKEN_ID_LEN || strspn(t->id, "0123456789abcdef") != n || t->name[0] == '\0' ||
        t->nscopes > TOKEN_SCOPES_MAX)
        return ARCA_E_INVALID;
    struct event ev = {.action = EV_TOKEN_CREATE, .who = who};
    ev.u.tcreate.t = t;
    ev.u.tcreate.hash = secret_hash;
    int rc = apply(db, &ev, &applied);
    atomic_fetch_add(&db->token_gen, 1);
    return rc;
}

int repo_token_revoke(repo_db *db, const char *id, const struct actor_ctx *who, struct token *out)
{
    bool applied = false;
    struct event ev = {.action = EV_TOKEN_REVOKE, .who = who};
    ev.u.trevoke.id = id;
    ev.u.trevoke.out = out;
    int rc = apply(db, &ev, &applied);
    atomic_fetch_add(&db->token_gen, 1); /* after the write: a cached lookup cannot outlive it */
    return rc;
}

int repo_auth_failure(repo_db *db, const struct actor_ctx *who, const char *reason,
                      const char *token_id)
{
    bool applied = false;
    struct event ev = {.action = EV_AUTH_FAILURE, .who = who};
    ev.u.afail.reason = reason;
    ev.u.afail.token_id = token_id;
    return apply(db, &ev, &applied);
}
