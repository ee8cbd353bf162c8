/*
 * Other centres' events into this index (see replica.h), and the state
 * digest centres compare.
 */
#include "replica.h"

#include "arca_err.h"
#include "event_int.h"
#include "lifecycle.h"
#include "log.h"
#include "token.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static bool u64(json_t *o, const char *k, uint64_t *out)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static bool hex_field(json_t *o, const char *k, uint8_t *out, size_t n)
{
    const char *s = str(o, k);
    return s && strlen(s) == 2 * n && hex_decode(s, 2 * n, out, n) == 0;
}

static enum event_action action_of(const char *name)
{
    for (int i = 0; i < EV_COUNT; i++)
        if (name && strcmp(event_action_names[i], name) == 0)
            return (enum event_action)i;
    return EV_COUNT;
}

int repo_origin_applied(repo_db *db, const char *origin, uint64_t *seq)
{
    return origin_last(db, origin, seq);
}

/* CF_META key of a peer's cursor: "peer/" + name. */
static size_t peer_key(const char *peer, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "peer/%s", peer);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

int repo_peer_cursor_get(repo_db *db, const char *peer, uint64_t *seq)
{
    char key[128], *v = NULL;
    size_t klen = peer_key(peer, key, sizeof(key)), vlen = 0;
    *seq = 0;
    if (klen == 0)
        return ARCA_E_INVALID;
    int rc = db_get(db, CF_META, key, klen, &v, &vlen);
    if (rc == ARCA_E_NOTFOUND)
        return 0;
    if (rc == 0 && vlen == 8)
        *seq = get_be64((const uint8_t *)v);
    else if (rc == 0)
        rc = ARCA_E_DB;
    rocksdb_free(v);
    return rc;
}

int repo_peer_cursor_set(repo_db *db, const char *peer, uint64_t seq)
{
    char key[128], *err = NULL;
    uint8_t be[8];
    size_t klen = peer_key(peer, key, sizeof(key));
    if (klen == 0)
        return ARCA_E_INVALID;
    if (db->readonly)
        return ARCA_E_DB;
    put_be64(be, seq);
    rocksdb_put_cf(db->db, db->wopts, db->cf[CF_META], key, klen, (const char *)be, 8, &err);
    return err ? db_error("peer cursor", err) : 0;
}

int repo_apply_remote(repo_db *db, const char *event_json, size_t len,
                      const struct blob_blocks *blocks, bool *applied)
{
    json_t *e = json_loadb(event_json, len, 0, NULL);
    json_t *d = json_object_get(e, "details");
    struct event ev;
    struct actor_ctx who = {0};
    struct op_result res = {0};
    struct coord c;
    struct artifact art;
    struct blob_digests dig;
    struct token t;
    uint8_t secret_hash[32];
    json_t *args = NULL;
    const char *why;
    int rc = ARCA_E_INVALID;

    *applied = false;
    memset(&ev, 0, sizeof(ev));
    ev.origin = str(e, "origin");
    ev.action = action_of(str(e, "action"));
    ev.remote_subject = str(e, "subject");
    ev.remote_details = d;
    if (!json_is_object(e) || !json_is_object(d) || !ev.origin || !*ev.origin ||
        strlen(ev.origin) > CENTRE_MAX || ev.action == EV_COUNT || !ev.remote_subject ||
        !u64(e, "origin_seq", &ev.origin_seq) || ev.origin_seq == 0 || !u64(e, "hlc", &ev.hlc) ||
        ev.hlc == 0) {
        LOG_W("replication: malformed event");
        goto out;
    }
    if (strcmp(ev.origin, db->centre) == 0) {
        rc = 0; /* our own event, relayed back */
        goto out;
    }
    who.actor = str(e, "actor");
    who.remote_addr = str(e, "remote_addr");
    who.request_id = str(e, "request_id");
    ev.who = &who;

    switch (ev.action) {
    case EV_ARTIFACT_PUT:
        memset(&dig, 0, sizeof(dig));
        if (coord_set(&c, str(d, "repo") ? str(d, "repo") : "", str(d, "name") ? str(d, "name") : "",
                      str(d, "version") ? str(d, "version") : "",
                      str(d, "path") ? str(d, "path") : "", &why) != 0 ||
            !hex_field(d, "sha256", dig.sha256, 32) || !hex_field(d, "sha1", dig.sha1, 20) ||
            !hex_field(d, "md5", dig.md5, 16) || !u64(d, "size", &dig.size))
            goto bad;
        ev.u.put.c = &c;
        ev.u.put.dig = &dig;
        ev.u.put.blocks = blocks;
        ev.u.put.props = json_object_get(d, "properties");
        ev.u.put.out = &art;
        ev.u.put.res = &res;
        break;
    case EV_TOKEN_CREATE: {
        const char *sub = ev.remote_subject;
        json_t *scopes = json_object_get(d, "scopes");
        memset(&t, 0, sizeof(t));
        if (strncmp(sub, "token/", 6) != 0 || strlen(sub + 6) != TOKEN_ID_LEN ||
            !str(d, "name") || !str(d, "owner") || !json_is_array(scopes) ||
            json_array_size(scopes) > TOKEN_SCOPES_MAX ||
            !hex_field(d, "secret_sha256", secret_hash, 32) || !u64(d, "expires_ms", &t.expires_ms))
            goto bad;
        snprintf(t.id, sizeof(t.id), "%s", sub + 6);
        snprintf(t.name, sizeof(t.name), "%s", str(d, "name"));
        snprintf(t.owner, sizeof(t.owner), "%s", str(d, "owner"));
        for (size_t i = 0; i < json_array_size(scopes); i++) {
            const char *sc = json_string_value(json_array_get(scopes, i));
            if (!sc || strlen(sc) > TOKEN_SCOPE_MAX)
                goto bad;
            snprintf(t.scopes[t.nscopes++], TOKEN_SCOPE_MAX + 1, "%s", sc);
        }
        ev.u.tcreate.t = &t;
        ev.u.tcreate.hash = secret_hash;
        break;
    }
    case EV_TOKEN_REVOKE:
        if (strncmp(ev.remote_subject, "token/", 6) != 0 ||
            strlen(ev.remote_subject + 6) != TOKEN_ID_LEN)
            goto bad;
        ev.u.trevoke.id = ev.remote_subject + 6;
        break;
    case EV_AUTH_FAILURE:
        ev.u.afail.reason = str(d, "reason") ? str(d, "reason") : "";
        ev.u.afail.token_id = str(d, "token_id");
        break;
    default: {
        /* Version-level actions: the details carry their arguments. */
        if (coord_set(&c, str(d, "repo") ? str(d, "repo") : "",
                      str(d, "name") ? str(d, "name") : "",
                      str(d, "version") ? str(d, "version") : "", NULL, &why) != 0)
            goto bad;
        switch (ev.action) {
        case EV_VERSION_PROMOTE:
            args = json_pack("{s:s,s:s}", "to", str(d, "to") ? str(d, "to") : "", "reason",
                             str(d, "reason") ? str(d, "reason") : "");
            break;
        case EV_VERSION_REVOKE:
        case EV_VERSION_DELETE:
            args = json_pack("{s:s}", "reason", str(d, "reason") ? str(d, "reason") : "");
            break;
        case EV_PROPERTY_SET:
            if (!json_is_object(json_object_get(d, "changes")))
                goto bad;
            args = json_pack("{s:O}", "changes", json_object_get(d, "changes"));
            break;
        case EV_BUILD_PUT:
            if (!json_is_object(json_object_get(d, "record")))
                goto bad;
            args = json_pack("{s:O}", "record", json_object_get(d, "record"));
            break;
        case EV_DEPLOYMENT_RECORD:
            if (!str(d, "environment") || !str(d, "target"))
                goto bad;
            args = json_pack("{s:s,s:s}", "environment", str(d, "environment"), "target",
                             str(d, "target"));
            break;
        default:
            goto bad;
        }
        ev.u.vop.repo = c.repo;
        ev.u.vop.name = c.name;
        ev.u.vop.version = c.version;
        ev.u.vop.args = args;
        ev.u.vop.res = &res;
        break;
    }
    }
    rc = apply(db, &ev, applied);
    if (ev.action == EV_TOKEN_CREATE || ev.action == EV_TOKEN_REVOKE)
        atomic_fetch_add(&db->token_gen, 1);
    goto out;
bad:
    LOG_W("replication: malformed %s event %s/%llu", event_action_names[ev.action], ev.origin,
          (unsigned long long)ev.origin_seq);
    rc = ARCA_E_INVALID;
out:
    op_result_clear(&res);
    json_decref(args);
    json_decref(e);
    return rc;
}

/* ---- state digest ----------------------------------------------------- */

enum value_mode { V_RAW, V_NONE, V_JSON_NO_SEQ };

/* JSON values lose their local sequence numbers ("seq", "event_seq", "stage_seq", ...). */
static void feed_json_no_seq(XXH3_state_t *h, const char *v, size_t vl)
{
    json_t *o = json_loadb(v, vl, 0, NULL);
    if (!json_is_object(o)) {
        XXH3_64bits_update(h, v, vl);
        json_decref(o);
        return;
    }
    const char *k;
    json_t *x;
    void *tmp;
    json_object_foreach_safe(o, tmp, k, x)
    {
        size_t n = strlen(k);
        if (n >= 3 && strcmp(k + n - 3, "seq") == 0)
            json_object_del(o, k);
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    if (text)
        XXH3_64bits_update(h, text, strlen(text));
    free(text);
    json_decref(o);
}

int repo_state_digest(repo_db *db, uint64_t *digest)
{
    static const struct {
        enum repo_cf cf;
        enum value_mode mode;
    } parts[] = {
        {CF_REPOS, V_RAW},          {CF_NAMES, V_RAW},      {CF_VERSIONS, V_JSON_NO_SEQ},
        {CF_ARTIFACTS, V_JSON_NO_SEQ}, {CF_BLOBS, V_RAW},   {CF_SHA1, V_RAW},
        {CF_PROPS, V_JSON_NO_SEQ},  {CF_PROPIDX, V_NONE},   {CF_STAGEIDX, V_NONE},
        {CF_BUILDS, V_RAW},         {CF_CONFLICTS, V_RAW},  {CF_BLOBREFS, V_NONE},
        {CF_TOKENS, V_RAW},         {CF_TOKEN_HASH, V_RAW}, {CF_ORIGINS, V_RAW},
    };
    XXH3_state_t *h = XXH3_createState();
    int rc = 0;
    if (!h)
        return -ENOMEM;
    XXH3_64bits_reset(h);
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]) && rc == 0; i++) {
        uint8_t tag[2] = {0xff, (uint8_t)parts[i].cf};
        XXH3_64bits_update(h, tag, 2);
        rocksdb_iterator_t *it =
            rocksdb_create_iterator_cf(db->db, db->ropts, db->cf[parts[i].cf]);
        for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
            size_t kl, vl;
            const char *k = rocksdb_iter_key(it, &kl);
            const char *v = rocksdb_iter_value(it, &vl);
            uint8_t be[8];
            put_be64(be, kl);
            XXH3_64bits_update(h, be, 8);
            XXH3_64bits_update(h, k, kl);
            if (parts[i].mode == V_RAW) {
                put_be64(be, vl);
                XXH3_64bits_update(h, be, 8);
                XXH3_64bits_update(h, v, vl);
            } else if (parts[i].mode == V_JSON_NO_SEQ) {
                feed_json_no_seq(h, v, vl);
            }
        }
        char *err = NULL;
        rocksdb_iter_get_error(it, &err);
        if (err)
            rc = db_error("digest", err);
        rocksdb_iter_destroy(it);
    }
    *digest = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return rc;
}
