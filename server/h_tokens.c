/*
 * /api/v1/tokens[/{id}]: create (POST), list and show (GET), revoke (DELETE).
 * Every route needs the admin scope.  Creating and revoking are synced index
 * writes, so they run on the I/O pool.  A new token's secret is in the 201
 * answer and nowhere else: not in the index, the log or the event.
 */
#include "arca_err.h"
#include "auth.h"
#include "httputil.h"
#include "log.h"
#include "server_int.h"
#include "util.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY_MAX (64u * 1024)
#define EXPIRES_MAX_S (10ull * 366 * 24 * 3600)

struct tok_req {
    struct conn *c;
    struct body_buf body;
    struct iojob job;
    struct token t;
    char id[TOKEN_ID_LEN + 1];
    char secret[AUTH_SECRET_LEN + 1];
    int rc;
};

static json_t *token_to_json(const struct token *t)
{
    json_t *scopes = json_array();
    for (size_t i = 0; i < t->nscopes; i++)
        json_array_append_new(scopes, json_string(t->scopes[i]));
    json_t *o = json_pack("{s:s,s:s,s:s,s:o,s:s}", "id", t->id, "name", t->name, "owner",
                          t->owner, "scopes", scopes, "created_by", t->created_by);
    json_object_set_new(o, "created", time_json(t->created_ms));
    json_object_set_new(o, "expires", time_json(t->expires_ms));
    json_object_set_new(o, "last_used", time_json(t->last_used_ms));
    json_object_set_new(o, "revoked", time_json(t->revoked_ms));
    return o;
}

static void tok_free(struct conn *c)
{
    struct tok_req *r = conn_ctx(c);
    if (!r)
        return;
    OPENSSL_cleanse(r->secret, sizeof(r->secret));
    body_buf_free(&r->body);
    free(r);
}

static int tok_body(struct conn *c, const char *data, size_t len)
{
    struct tok_req *r = conn_ctx(c);
    body_buf_append(&r->body, data, len);
    return 0;
}

/* Checks the create request into r->t; answers 400 and returns false when bad. */
static bool parse_create(struct conn *c, struct tok_req *r)
{
    json_error_t jerr;
    json_t *o = r->body.len ? json_loadb(r->body.data, r->body.len, 0, &jerr) : NULL;
    const char *key, *why;
    json_t *v;
    bool ok = false;
    memset(&r->t, 0, sizeof(r->t));
    if (!json_is_object(o)) {
        resp_error(c, 400, "bad_request", NULL, "the body must be a JSON object");
        goto out;
    }
    json_object_foreach(o, key, v)
    {
        if (strcmp(key, "name") && strcmp(key, "owner") && strcmp(key, "scopes") &&
            strcmp(key, "expires_in")) {
            resp_error(c, 400, "bad_request", NULL,
                       "unknown field '%.64s' (name, owner, scopes, expires_in)", key);
            goto out;
        }
    }
    const char *name = json_string_value(json_object_get(o, "name"));
    if (!name || !auth_name_ok(name)) {
        resp_error(c, 400, "bad_request", NULL,
                   "name must be 1-%d characters of A-Z a-z 0-9 . _ @ + -, starting with a "
                   "letter or digit", TOKEN_NAME_MAX);
        goto out;
    }
    snprintf(r->t.name, sizeof(r->t.name), "%s", name);
    v = json_object_get(o, "owner");
    const char *owner = v ? json_string_value(v) : conn_actor(c);
    /* A client certificate's actor is "cert:NAME"; as an owner it is NAME (no ':' in names). */
    if (!v && owner && strncmp(owner, "cert:", 5) == 0 && auth_name_ok(owner + 5))
        owner += 5;
    if (!owner || !auth_name_ok(owner)) {
        resp_error(c, 400, "bad_request", NULL,
                   "owner must be 1-%d characters of A-Z a-z 0-9 . _ @ + -, starting with a "
                   "letter or digit", TOKEN_NAME_MAX);
        goto out;
    }
    snprintf(r->t.owner, sizeof(r->t.owner), "%s", owner);
    json_t *scopes = json_object_get(o, "scopes");
    if (!json_is_array(scopes) || json_array_size(scopes) == 0 ||
        json_array_size(scopes) > TOKEN_SCOPES_MAX) {
        resp_error(c, 400, "bad_request", NULL, "scopes must be a list of 1-%d scope strings",
                   TOKEN_SCOPES_MAX);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(scopes); i++) {
        const char *sc = json_string_value(json_array_get(scopes, i));
        struct scope parsed;
        if (!sc || strlen(sc) > TOKEN_SCOPE_MAX) {
            resp_error(c, 400, "bad_request", NULL, "scope %zu is not a string of at most %d "
                       "characters", i, TOKEN_SCOPE_MAX);
            goto out;
        }
        if (scope_parse(sc, &parsed, &why) != 0) {
            resp_error(c, 400, "bad_request", NULL, "scope '%s': %s", sc, why);
            goto out;
        }
        snprintf(r->t.scopes[r->t.nscopes++], TOKEN_SCOPE_MAX + 1, "%s", sc);
    }
    v = json_object_get(o, "expires_in");
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
            (uint64_t)json_integer_value(v) > EXPIRES_MAX_S) {
            resp_error(c, 400, "bad_request", NULL,
                       "expires_in must be a whole number of seconds, 1 to %llu",
                       (unsigned long long)EXPIRES_MAX_S);
            goto out;
        }
        r->t.expires_ms = time_now_ms() + (uint64_t)json_integer_value(v) * 1000;
    }
    ok = true;
out:
    json_decref(o);
    return ok;
}

static void create_work(struct iojob *job)
{
    struct tok_req *r = (struct tok_req *)((char *)job - offsetof(struct tok_req, job));
    struct actor_ctx who = {conn_actor(r->c), conn_peer(r->c), conn_request_id(r->c)};
    r->rc = auth_token_issue(conn_server(r->c)->auth, &r->t, &who, r->secret);
}

static void create_done(struct iojob *job)
{
    struct tok_req *r = (struct tok_req *)((char *)job - offsetof(struct tok_req, job));
    struct conn *c = r->c;
    if (!conn_async_end(c) || conn_responded(c))
        return;
    if (r->rc != 0) {
        resp_error(c, 500, "internal", NULL, "cannot store the token: %s", arca_strerror(r->rc));
        return;
    }
    LOG_I("req %s: token %s ('%s') created by %s", conn_request_id(c), r->t.id, r->t.name,
          conn_actor(c));
    json_t *o = token_to_json(&r->t);
    json_object_set_new(o, "token", json_string(r->secret));
    OPENSSL_cleanse(r->secret, sizeof(r->secret));
    resp_start(c, 201);
    resp_header(c, "Location", "/api/v1/tokens/%s", r->t.id);
    resp_header(c, "Cache-Control", "no-store");
    resp_finish_json(c, o);
}

static void tok_complete(struct conn *c)
{
    struct tok_req *r = conn_ctx(c);
    if (r->body.too_big) {
        resp_close_after(c);
        resp_error(c, 413, "payload_too_large", NULL, "token requests are at most %u bytes",
                   BODY_MAX);
        return;
    }
    if (!parse_create(c, r))
        return;
    r->job = (struct iojob){.work = create_work, .done = create_done, .mbox = conn_mailbox(c)};
    conn_async_begin(c);
    iopool_submit(conn_server(c)->pool, &r->job);
}

static void revoke_work(struct iojob *job)
{
    struct tok_req *r = (struct tok_req *)((char *)job - offsetof(struct tok_req, job));
    struct actor_ctx who = {conn_actor(r->c), conn_peer(r->c), conn_request_id(r->c)};
    r->rc = repo_token_revoke(conn_server(r->c)->db, r->id, &who, &r->t);
}

static void revoke_done(struct iojob *job)
{
    struct tok_req *r = (struct tok_req *)((char *)job - offsetof(struct tok_req, job));
    struct conn *c = r->c;
    if (!conn_async_end(c) || conn_responded(c))
        return;
    if (r->rc == ARCA_E_NOTFOUND) {
        resp_error(c, 404, "not_found", NULL, "no token with id %s", r->id);
        return;
    }
    if (r->rc != 0) {
        resp_error(c, 500, "internal", NULL, "cannot revoke the token: %s", arca_strerror(r->rc));
        return;
    }
    LOG_I("req %s: token %s ('%s') revoked by %s", conn_request_id(c), r->t.id, r->t.name,
          conn_actor(c));
    resp_json(c, 200, token_to_json(&r->t));
}

struct list_ctx {
    json_t *items;
};

static int add_token(void *arg, const struct token *t)
{
    struct list_ctx *l = arg;
    json_array_append_new(l->items, token_to_json(t));
    return 0;
}

static void list_tokens(struct conn *c)
{
    size_t limit;
    char cursor[REPO_CURSOR_MAX], next[REPO_CURSOR_MAX] = "";
    if (page_query(c, &limit, cursor) != 0)
        return;
    struct list_ctx l = {json_array()};
    int rc = repo_token_list(conn_server(c)->db, cursor, limit, add_token, &l, next);
    if (rc != 0) {
        json_decref(l.items);
        resp_list_error(c, rc, "listing tokens");
        return;
    }
    resp_json(c, 200, json_pack("{s:o,s:o}", "items", l.items, "next_cursor",
                                next_cursor_json(next)));
}

static void tok_headers(struct conn *c)
{
    const char *m = conn_method(c);
    const char *path = conn_path(c);
    size_t base = strlen("/api/v1/tokens");
    const char *id = conn_path_len(c) > base + 1 ? path + base + 1 : NULL;
    if (!conn_authorize(c, "admin", NULL))
        return;
    struct tok_req *r = calloc(1, sizeof(*r));
    if (!r) {
        resp_error(c, 500, "internal", NULL, "out of memory");
        return;
    }
    r->c = c;
    r->body.max = BODY_MAX;
    conn_set_ctx(c, r);
    if (!id && strcmp(m, "POST") == 0) {
        int64_t cl = conn_content_length(c);
        if (cl > (int64_t)BODY_MAX) {
            resp_close_after(c);
            resp_error(c, 413, "payload_too_large", NULL, "token requests are at most %u bytes",
                       BODY_MAX);
            return;
        }
        conn_accept_body(c); /* tok_complete follows */
        return;
    }
    if (!id && (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0)) {
        list_tokens(c);
        return;
    }
    if (id && strlen(id) == TOKEN_ID_LEN && strspn(id, "0123456789abcdef") == TOKEN_ID_LEN) {
        snprintf(r->id, sizeof(r->id), "%s", id);
        if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0) {
            struct token t;
            int rc = repo_token_get(conn_server(c)->db, r->id, &t);
            if (rc == ARCA_E_NOTFOUND)
                resp_error(c, 404, "not_found", NULL, "no token with id %s", r->id);
            else if (rc != 0)
                resp_error(c, 500, "internal", NULL, "%s", arca_strerror(rc));
            else
                resp_json(c, 200, token_to_json(&t));
            return;
        }
        if (strcmp(m, "DELETE") == 0) {
            r->job = (struct iojob){.work = revoke_work, .done = revoke_done,
                                    .mbox = conn_mailbox(c)};
            conn_async_begin(c);
            iopool_submit(conn_server(c)->pool, &r->job);
            return;
        }
    } else if (id) {
        resp_error(c, 404, "not_found", NULL, "no token with that id");
        return;
    }
    resp_method_not_allowed(c, id ? "GET, HEAD, DELETE" : "GET, HEAD, POST");
}

const struct handler tokens_handler = {
    .route = "tokens",
    .on_headers = tok_headers,
    .on_body = tok_body,
    .on_complete = tok_complete,
    .on_free = tok_free,
};
