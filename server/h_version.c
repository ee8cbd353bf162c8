/*
 * A version's life over HTTP:
 *   POST   /api/v1/repos/{repo}/{name}/{version}/promote     {"to", "reason", "dry_run"}
 *   POST   /api/v1/repos/{repo}/{name}/{version}/revoke      {"reason"}
 *   DELETE /api/v1/repos/{repo}/{name}/{version}             optional {"reason"}
 *   GET|PATCH /api/v1/repos/{repo}/{name}/{version}/properties
 *   GET|PUT   /api/v1/repos/{repo}/{name}/{version}/build
 *   GET    /api/v1/repos/{repo}/{name}/{version}/history
 *   POST|GET /api/v1/deployments
 *   GET    /api/v1/search?...
 *   GET    /api/v1/trace/{sha256} | /api/v1/trace/{repo}/{name}/{version}
 * Mutations are synced index writes and run on the I/O pool; reads run
 * inline like the other listings.
 */
#include "arca_err.h"
#include "auth.h"
#include "hlc.h"
#include "httputil.h"
#include "lifecycle.h"
#include "log.h"
#include "server_int.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY_MAX (64u * 1024)

enum vop { OP_PROMOTE, OP_REVOKE, OP_DELETE, OP_PROPS, OP_BUILD, OP_DEPLOY };

struct vreq {
    struct conn *c;
    enum vop op;
    struct body_buf body;
    json_t *in;
    struct iojob job;
    char repo[COORD_REPO_MAX + 1], name[COORD_SEGMENT_MAX + 1], version[COORD_SEGMENT_MAX + 1];
    struct op_result res;
    int rc;
};

static void vreq_free(struct conn *c)
{
    struct vreq *r = conn_ctx(c);
    if (!r)
        return;
    body_buf_free(&r->body);
    json_decref(r->in);
    op_result_clear(&r->res);
    free(r);
}

static int vreq_body(struct conn *c, const char *data, size_t len)
{
    struct vreq *r = conn_ctx(c);
    body_buf_append(&r->body, data, len);
    return 0;
}

json_t *version_state_json(repo_db *db, const char *repo, const char *name, const char *version,
                           const struct version_state *vs)
{
    const char *stage = repo_stage_of(db, vs);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:I,s:I,s:b}", "repo", repo, "name", name,
                          "version", version, "stage", stage, "created", time_json(vs->created_ms),
                          "stage_entered", time_json(vs->stage_ms ? vs->stage_ms : vs->created_ms),
                          "file_count", (json_int_t)vs->file_count, "total_bytes",
                          (json_int_t)vs->total_bytes, "has_build", vs->has_build);
    json_object_set_new(o, "revoked",
                        vs->revoked_ms ? json_pack("{s:o,s:s,s:s}", "at", time_json(vs->revoked_ms),
                                                   "by", vs->revoked_by, "reason",
                                                   vs->revoke_reason)
                                       : json_null());
    json_object_set_new(o, "deleted",
                        vs->deleted_ms ? json_pack("{s:o,s:s}", "at", time_json(vs->deleted_ms), "by",
                                                   vs->deleted_by)
                                       : json_null());
    return o;
}

/* Answers a refused operation with the status its code calls for. */
static void answer_refusal(struct conn *c, int rc, struct op_result *res)
{
    int status = 500;
    const char *code = res->code[0] ? res->code : "internal";
    switch (rc) {
    case ARCA_E_NOTFOUND: status = 404; break;
    case ARCA_E_INVALID: status = strcmp(code, "subject_mismatch") == 0 ? 422 : 400; break;
    case ARCA_E_PRECONDITION: status = 412; break;
    case ARCA_E_CONFLICT: status = strcmp(code, "version_deleted") == 0 ? 410 : 409; break;
    default: break;
    }
    if (status == 500) {
        resp_error(c, 500, "internal", NULL, "the index failed: %s", arca_strerror(rc));
        return;
    }
    json_t *extra = res->detail;
    res->detail = NULL;
    if (extra && !json_is_object(extra)) {
        json_decref(extra);
        extra = NULL;
    }
    resp_error(c, status, code, extra, "%s", res->message[0] ? res->message : arca_strerror(rc));
}

static void op_work(struct iojob *job)
{
    struct vreq *r = (struct vreq *)((char *)job - offsetof(struct vreq, job));
    struct conn *c = r->c;
    repo_db *db = conn_server(c)->db;
    struct actor_ctx who = {conn_actor(c), conn_peer(c), conn_request_id(c)};
    json_t *in = r->in;
    switch (r->op) {
    case OP_PROMOTE:
        r->rc = repo_promote(db, r->repo, r->name, r->version,
                             json_string_value(json_object_get(in, "to")),
                             json_string_value(json_object_get(in, "reason")),
                             json_is_true(json_object_get(in, "dry_run")), &who, &r->res);
        break;
    case OP_REVOKE:
        r->rc = repo_revoke(db, r->repo, r->name, r->version,
                            json_string_value(json_object_get(in, "reason")), &who, &r->res);
        break;
    case OP_DELETE:
        r->rc = repo_delete_version(db, r->repo, r->name, r->version,
                                    json_string_value(json_object_get(in, "reason")), &who,
                                    &r->res);
        break;
    case OP_PROPS:
        r->rc = repo_set_properties(db, r->repo, r->name, r->version, in, &who, &r->res);
        break;
    case OP_BUILD:
        r->rc = repo_put_build(db, r->repo, r->name, r->version, in, &who, &r->res);
        break;
    case OP_DEPLOY:
        r->rc = repo_record_deployment(db, json_string_value(json_object_get(in, "environment")),
                                       json_string_value(json_object_get(in, "target")), r->repo,
                                       r->name, r->version, &who, &r->res);
        break;
    }
}

static void op_done(struct iojob *job)
{
    struct vreq *r = (struct vreq *)((char *)job - offsetof(struct vreq, job));
    struct conn *c = r->c;
    repo_db *db;
    if (!conn_async_end(c) || conn_responded(c))
        return;
    db = conn_server(c)->db;
    if (r->rc != 0) {
        answer_refusal(c, r->rc, &r->res);
        return;
    }
    json_t *o = version_state_json(db, r->repo, r->name, r->version, &r->res.state);
    json_object_set_new(o, "changed", json_boolean(r->res.changed));
    json_object_set_new(o, "event", r->res.changed ? json_integer((json_int_t)r->res.seq)
                                                   : json_null());
    int status = 200;
    switch (r->op) {
    case OP_PROMOTE: {
        bool dry = json_is_true(json_object_get(r->in, "dry_run"));
        json_object_set_new(o, "dry_run", json_boolean(dry));
        json_t *checked = json_object_get(r->res.detail, "checked");
        json_object_set(o, "gates", checked ? checked : json_array());
        if (dry)
            json_object_set(o, "would_enter", json_object_get(r->res.detail, "to"));
        if (r->res.changed)
            LOG_I("req %s: %s/%s/%s promoted to %s by %s", conn_request_id(c), r->repo, r->name,
                  r->version, r->res.state.stage, conn_actor(c));
        break;
    }
    case OP_PROPS: {
        json_t *props = NULL;
        if (repo_get_properties(db, r->repo, r->name, r->version, &props) == 0)
            json_object_set_new(o, "properties", props);
        break;
    }
    case OP_BUILD:
        json_object_set(o, "build", r->res.detail);
        status = r->res.changed ? 201 : 200;
        break;
    case OP_DEPLOY: {
        json_t *d = json_pack("{s:s,s:s,s:s,s:s,s:s,s:O,s:b}", "environment",
                              json_string_value(json_object_get(r->in, "environment")), "target",
                              json_string_value(json_object_get(r->in, "target")), "repo",
                              r->repo, "name", r->name, "version", r->version, "event",
                              json_object_get(o, "event"), "revoked",
                              r->res.state.revoked_ms != 0);
        json_object_set_new(d, "stage", json_string(repo_stage_of(db, &r->res.state)));
        json_decref(o);
        o = d;
        status = 201;
        break;
    }
    default:
        break;
    }
    resp_json(c, status, o);
}

/* The authorization each operation needs, checked once the body is known. */
static bool op_authorized(struct vreq *r)
{
    char action[64];
    switch (r->op) {
    case OP_PROMOTE: {
        const char *to = json_string_value(json_object_get(r->in, "to"));
        if (!to || !*to) {
            resp_error(r->c, 400, "bad_request", NULL, "\"to\" names the stage to promote to");
            return false;
        }
        snprintf(action, sizeof(action), "promote:%.40s", to);
        return conn_authorize(r->c, action, r->repo);
    }
    case OP_REVOKE: return conn_authorize(r->c, "revoke", r->repo);
    case OP_DELETE: return conn_authorize(r->c, "delete", r->repo);
    case OP_PROPS:
    case OP_BUILD: return conn_authorize(r->c, "write", r->repo);
    case OP_DEPLOY: return conn_authorize(r->c, "deploy-record", r->repo);
    }
    return false;
}

/* Fields each body may carry (NULL-terminated); the build and property bodies are free-form. */
static const char *const promote_fields[] = {"to", "reason", "dry_run", NULL};
static const char *const reason_fields[] = {"reason", NULL};
static const char *const deploy_fields[] = {"environment", "target", "repo", "name", "version",
                                            NULL};

static bool fields_ok(struct conn *c, json_t *in, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach(in, k, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++)
            ok = ok || strcmp(k, allowed[i]) == 0;
        if (!ok) {
            resp_error(c, 400, "bad_request", NULL, "unknown field '%.64s'", k);
            return false;
        }
        if (strcmp(k, "dry_run") == 0 ? !json_is_boolean(v) : !json_is_string(v)) {
            resp_error(c, 400, "bad_request", NULL, "'%s' must be a %s", k,
                       strcmp(k, "dry_run") == 0 ? "boolean" : "string");
            return false;
        }
    }
    return true;
}

static bool deploy_coord(struct vreq *r)
{
    const char *why;
    struct coord co;
    const char *repo = json_string_value(json_object_get(r->in, "repo"));
    const char *name = json_string_value(json_object_get(r->in, "name"));
    const char *version = json_string_value(json_object_get(r->in, "version"));
    if (!repo || !name || !version || !json_object_get(r->in, "environment") ||
        !json_object_get(r->in, "target")) {
        resp_error(r->c, 400, "bad_request", NULL,
                   "a deployment needs environment, target, repo, name and version");
        return false;
    }
    if (coord_set(&co, repo, name, version, NULL, &why) != 0) {
        resp_error(r->c, 400, "invalid_path", NULL, "invalid coordinate: %s", why);
        return false;
    }
    snprintf(r->repo, sizeof(r->repo), "%s", repo);
    snprintf(r->name, sizeof(r->name), "%s", name);
    snprintf(r->version, sizeof(r->version), "%s", version);
    return true;
}

static void vreq_complete(struct conn *c)
{
    struct vreq *r = conn_ctx(c);
    json_error_t jerr;
    if (r->body.too_big) {
        resp_close_after(c);
        resp_error(c, 413, "payload_too_large", NULL, "this request's body is at most %zu bytes",
                   r->body.max);
        return;
    }
    if (r->body.len == 0 && r->op == OP_DELETE) {
        r->in = json_object();
    } else {
        r->in = json_loadb(r->body.data ? r->body.data : "", r->body.len, JSON_REJECT_DUPLICATES,
                           &jerr);
        if (!json_is_object(r->in)) {
            resp_error(c, 400, "bad_json", NULL, "the body must be a JSON object%s%s",
                       r->in ? "" : ": ", r->in ? "" : jerr.text);
            return;
        }
    }
    if ((r->op == OP_PROMOTE && !fields_ok(c, r->in, promote_fields)) ||
        ((r->op == OP_REVOKE || r->op == OP_DELETE) && !fields_ok(c, r->in, reason_fields)) ||
        (r->op == OP_DEPLOY && (!fields_ok(c, r->in, deploy_fields) || !deploy_coord(r))))
        return;
    if (!op_authorized(r))
        return;
    r->job = (struct iojob){.work = op_work, .done = op_done, .mbox = conn_mailbox(c)};
    conn_async_begin(c);
    iopool_submit(conn_server(c)->pool, &r->job);
}

static struct vreq *vreq_new(struct conn *c, enum vop op, size_t max)
{
    struct vreq *r = calloc(1, sizeof(*r));
    if (!r) {
        resp_error(c, 500, "internal", NULL, "out of memory");
        return NULL;
    }
    r->c = c;
    r->op = op;
    r->body.max = max;
    conn_set_ctx(c, r);
    return r;
}

static void accept_json(struct conn *c, struct vreq *r)
{
    if (conn_content_length(c) > (int64_t)r->body.max) {
        resp_close_after(c);
        resp_error(c, 413, "payload_too_large", NULL, "this request's body is at most %zu bytes",
                   r->body.max);
        return;
    }
    conn_accept_body(c); /* vreq_complete follows */
}

/* ---- reads ---- */

struct hist_page {
    json_t *items;
};

static int add_event(void *arg, json_t *ev)
{
    struct hist_page *h = arg;
    json_array_append_new(h->items, ev);
    return 0;
}

static void get_history(struct conn *c, const char *repo, const char *name, const char *version)
{
    size_t limit;
    char cursor[REPO_CURSOR_MAX], next[REPO_CURSOR_MAX] = "";
    if (page_query(c, &limit, cursor) != 0)
        return;
    struct hist_page h = {json_array()};
    int rc = repo_version_history(conn_server(c)->db, repo, name, version, cursor, limit,
                                  add_event, &h, next);
    if (rc != 0) {
        json_decref(h.items);
        resp_list_error(c, rc, "history");
        return;
    }
    resp_json(c, 200, json_pack("{s:s,s:s,s:s,s:o,s:o}", "repo", repo, "name", name, "version",
                                version, "items", h.items, "next_cursor",
                                next_cursor_json(next)));
}

struct prop_hist {
    json_t *items;
};

static int add_prop_change(void *arg, json_t *ev)
{
    struct prop_hist *h = arg;
    const char *action = json_string_value(json_object_get(ev, "action"));
    json_t *d = json_object_get(ev, "details");
    json_t *changes = NULL;
    if (action && strcmp(action, "property.set") == 0)
        changes = json_object_get(d, "changes");
    else if (action && strcmp(action, "artifact.put") == 0)
        changes = json_object_get(d, "properties");
    if (json_object_size(changes) > 0) {
        json_t *hl = json_object_get(ev, "hlc");
        char at[32];
        time_format_iso(json_is_integer(hl) ? HLC_MS((uint64_t)json_integer_value(hl)) : 0, at);
        json_array_append_new(
            h->items, json_pack("{s:O,s:O,s:O,s:s,s:O,s:O}", "event", json_object_get(ev, "seq"),
                                "changes", changes, "previous",
                                json_object_get(d, "previous") ? json_object_get(d, "previous")
                                                               : json_null(),
                                "at", at, "by", json_object_get(ev, "actor"), "action",
                                json_object_get(ev, "action")));
    }
    json_decref(ev);
    return 0;
}

static void get_properties(struct conn *c, const char *repo, const char *name,
                           const char *version)
{
    repo_db *db = conn_server(c)->db;
    json_t *props = NULL;
    struct prop_hist h = {json_array()};
    char next[REPO_CURSOR_MAX];
    int rc = repo_get_properties(db, repo, name, version, &props);
    if (rc == 0)
        rc = repo_version_history(db, repo, name, version, NULL, 10000, add_prop_change, &h,
                                  next);
    if (rc != 0) {
        json_decref(props);
        json_decref(h.items);
        resp_error(c, 500, "internal", NULL, "reading properties failed: %s", arca_strerror(rc));
        return;
    }
    resp_json(c, 200, json_pack("{s:s,s:s,s:s,s:o,s:o}", "repo", repo, "name", name, "version",
                                version, "properties", props, "history", h.items));
}

static void get_build(struct conn *c, const char *repo, const char *name, const char *version)
{
    json_t *b = NULL;
    int rc = repo_get_build(conn_server(c)->db, repo, name, version, &b);
    if (rc == ARCA_E_NOTFOUND)
        resp_error(c, 404, "not_found", NULL, "version %s has no build record", version);
    else if (rc != 0)
        resp_error(c, 500, "internal", NULL, "reading the build record failed: %s",
                   arca_strerror(rc));
    else
        resp_json(c, 200, json_pack("{s:s,s:s,s:s,s:o}", "repo", repo, "name", name, "version",
                                    version, "build", b));
}

/* ---- /api/v1/repos/{repo}/{name}/{version}[/{action}] ---- */

static void version_headers(struct conn *c)
{
    const char *base = "/api/v1/repos/";
    const char *path = conn_path(c) + strlen(base);
    size_t len = conn_path_len(c) - strlen(base);
    const char *m = conn_method(c);
    char *buf = malloc(len + 8);
    char *segs[5];
    size_t lens[5];
    const char *why = NULL;
    if (!buf) {
        resp_error(c, 500, "internal", NULL, "out of memory");
        return;
    }
    int n = path_split(path, len, buf, segs, lens, 5);
    struct coord co;
    if (n < 3 || n > 4) {
        resp_error(c, n == ARCA_E_INVALID ? 400 : 404, n == ARCA_E_INVALID ? "invalid_path"
                   : "not_found", NULL, n == ARCA_E_INVALID ? "malformed percent-escape"
                   : "no such resource");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (strlen(segs[i]) != lens[i]) {
            resp_error(c, 400, "invalid_path", NULL, "a segment contains a NUL byte");
            goto out;
        }
    }
    if (coord_set(&co, segs[0], segs[1], segs[2], NULL, &why) != 0) {
        resp_error(c, 400, "invalid_path", NULL, "invalid path: %s", why);
        goto out;
    }
    const char *action = n == 4 ? segs[3] : "";
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
    struct vreq *r = NULL;
    enum vop op;
    size_t max = BODY_MAX;
    if (n == 3) {
        if (strcmp(m, "DELETE") != 0) {
            resp_method_not_allowed(c, "GET, HEAD, DELETE");
            goto out;
        }
        op = OP_DELETE;
    } else if (strcmp(action, "promote") == 0 || strcmp(action, "revoke") == 0) {
        if (strcmp(m, "POST") != 0) {
            resp_method_not_allowed(c, "POST");
            goto out;
        }
        op = action[0] == 'p' ? OP_PROMOTE : OP_REVOKE;
    } else if (strcmp(action, "properties") == 0) {
        if (get) {
            if (conn_authorize(c, "read", co.repo) &&
                repo_version_exists(conn_server(c)->db, co.repo, co.name, co.version) == 0)
                get_properties(c, co.repo, co.name, co.version);
            else if (!conn_responded(c))
                resp_error(c, 404, "not_found", NULL, "no such version");
            goto out;
        }
        if (strcmp(m, "PATCH") != 0) {
            resp_method_not_allowed(c, "GET, HEAD, PATCH");
            goto out;
        }
        op = OP_PROPS;
    } else if (strcmp(action, "build") == 0) {
        if (get) {
            if (conn_authorize(c, "read", co.repo))
                get_build(c, co.repo, co.name, co.version);
            goto out;
        }
        if (strcmp(m, "PUT") != 0) {
            resp_method_not_allowed(c, "GET, HEAD, PUT");
            goto out;
        }
        op = OP_BUILD;
        max = BUILD_RECORD_MAX;
    } else if (strcmp(action, "history") == 0) {
        if (!get) {
            resp_method_not_allowed(c, "GET, HEAD");
            goto out;
        }
        if (!conn_authorize(c, "read", co.repo))
            goto out;
        if (repo_version_exists(conn_server(c)->db, co.repo, co.name, co.version) != 0)
            resp_error(c, 404, "not_found", NULL, "no such version");
        else
            get_history(c, co.repo, co.name, co.version);
        goto out;
    } else {
        resp_error(c, 404, "not_found", NULL,
                   "no action '%.64s' (promote, revoke, properties, build, history)", action);
        goto out;
    }
    if (!(r = vreq_new(c, op, max)))
        goto out;
    snprintf(r->repo, sizeof(r->repo), "%s", co.repo);
    snprintf(r->name, sizeof(r->name), "%s", co.name);
    snprintf(r->version, sizeof(r->version), "%s", co.version);
    accept_json(c, r);
out:
    free(buf);
}

const struct handler version_handler = {
    .route = "version",
    .on_headers = version_headers,
    .on_body = vreq_body,
    .on_complete = vreq_complete,
    .on_free = vreq_free,
};

/* ---- /api/v1/deployments ---- */

struct dep_page {
    struct conn *c;
    json_t *items;
};

static int add_deployment(void *arg, json_t *rec)
{
    struct dep_page *p = arg;
    const char *repo = json_string_value(json_object_get(rec, "repo"));
    if (repo && auth_allows(conn_server(p->c)->auth, conn_principal(p->c), "read", repo))
        json_array_append(p->items, rec);
    json_decref(rec);
    return 0;
}

static void deploy_headers(struct conn *c)
{
    const char *m = conn_method(c);
    if (conn_path_len(c) != strlen("/api/v1/deployments")) {
        resp_error(c, 404, "not_found", NULL, "no such resource");
        return;
    }
    if (strcmp(m, "POST") == 0) {
        struct vreq *r = vreq_new(c, OP_DEPLOY, BODY_MAX);
        if (r)
            accept_json(c, r);
        return;
    }
    if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
        resp_method_not_allowed(c, "GET, HEAD, POST");
        return;
    }
    if (!conn_principal(c)->authenticated) {
        resp_error(c, 401, "unauthorized", NULL, "listing deployments needs a credential");
        return;
    }
    size_t limit;
    char cursor[REPO_CURSOR_MAX], next[REPO_CURSOR_MAX] = "", env[ENV_MAX + 1];
    bool bad = false, has_env = query_param(c, "environment", env, sizeof(env), &bad);
    if (bad || (has_env && !stages_name_ok(env, ENV_MAX))) {
        resp_error(c, 400, "bad_request", NULL,
                   "environment must be 1-%d characters of A-Z a-z 0-9 . _ -", ENV_MAX);
        return;
    }
    if (page_query(c, &limit, cursor) != 0)
        return;
    struct dep_page p = {c, json_array()};
    int rc = repo_list_deployments(conn_server(c)->db, has_env ? env : NULL, cursor, limit,
                                   add_deployment, &p, next);
    if (rc != 0) {
        json_decref(p.items);
        resp_list_error(c, rc, "listing deployments");
        return;
    }
    resp_json(c, 200, json_pack("{s:o,s:o,s:o}", "environment",
                                has_env ? json_string(env) : json_null(), "items", p.items,
                                "next_cursor", next_cursor_json(next)));
}

const struct handler deploy_handler = {
    .route = "deployments",
    .on_headers = deploy_headers,
    .on_body = vreq_body,
    .on_complete = vreq_complete,
    .on_free = vreq_free,
};

/* ---- /api/v1/search ---- */

struct search_page {
    struct conn *c;
    json_t *items;
};

static int add_hit(void *arg, json_t *item)
{
    struct search_page *p = arg;
    const char *repo = json_string_value(json_object_get(item, "repo"));
    if (repo && auth_allows(conn_server(p->c)->auth, conn_principal(p->c), "read", repo)) {
        json_array_append_new(p->items, item);
        return 1;
    }
    json_decref(item);
    return 0;
}

static bool parse_time_param(struct conn *c, const char *key, uint64_t *ms)
{
    char v[64];
    bool bad = false;
    if (!query_param(c, key, v, sizeof(v), &bad))
        return true;
    int64_t t;
    if (bad || time_parse_iso(v, &t) != 0) {
        resp_error(c, 400, "bad_request", NULL, "%s must be an ISO 8601 UTC time like "
                   "2026-01-31T12:00:00Z", key);
        return false;
    }
    *ms = (uint64_t)t * 1000;
    return true;
}

static void search_headers(struct conn *c)
{
    if (reject_unless_get(c))
        return;
    if (!conn_principal(c)->authenticated) {
        resp_error(c, 401, "unauthorized", NULL, "search needs a credential");
        return;
    }
    struct search_query q = {0};
    char repo[COORD_REPO_MAX + 1], name[COORD_SEGMENT_MAX + 1], stage[STAGE_NAME_MAX];
    char sha256[72], sha1[48];
    uint8_t s256[32], s1[20];
    static __thread char keys[9][PROP_KEY_MAX + 1], vals[9][PROP_VALUE_MAX + 1];
    size_t nprops = 0;
    bool bad = false;
    const char *why;
    /* Every parameter is known; a typo is an error, not a silently wider search. */
    const char *qs = conn_query(c);
    while (*qs) {
        const char *amp = strchr(qs, '&');
        size_t len = amp ? (size_t)(amp - qs) : strlen(qs);
        const char *eq = memchr(qs, '=', len);
        size_t kl = eq ? (size_t)(eq - qs) : len;
        static const char *const known[] = {"repo", "name", "stage", "sha256", "sha1",
                                            "created_after", "created_before", "limit",
                                            "cursor"};
        bool ok = kl > 9 && memcmp(qs, "property.", 9) == 0;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]) && !ok; i++)
            ok = strlen(known[i]) == kl && memcmp(qs, known[i], kl) == 0;
        if (!ok) {
            resp_error(c, 400, "bad_request", NULL, "unknown search parameter '%.*s' (repo, name, "
                       "stage, property.KEY, sha256, sha1, created_after, created_before, limit, "
                       "cursor)", (int)(kl > 64 ? 64 : kl), qs);
            return;
        }
        if (ok && kl > 9 && memcmp(qs, "property.", 9) == 0) {
            size_t dl;
            if (nprops == 9) {
                resp_error(c, 400, "bad_request", NULL, "at most 9 property filters");
                return;
            }
            if (kl - 9 > PROP_KEY_MAX || !eq) {
                resp_error(c, 400, "bad_property", NULL, "property filters are property.KEY=VALUE");
                return;
            }
            memcpy(keys[nprops], qs + 9, kl - 9);
            keys[nprops][kl - 9] = '\0';
            size_t vl = len - kl - 1;
            if (vl > PROP_VALUE_MAX || url_decode(eq + 1, vl, vals[nprops], &dl) != 0 ||
                strlen(vals[nprops]) != dl || prop_key_check(keys[nprops], &why) != 0) {
                resp_error(c, 400, "bad_property", NULL, "bad property filter '%.64s'",
                           keys[nprops]);
                return;
            }
            nprops++;
        }
        qs = amp ? amp + 1 : qs + len;
    }
    if (nprops > 0) {
        q.prop_key = keys[0];
        q.prop_value = vals[0];
        for (size_t i = 1; i < nprops; i++) {
            q.extra_keys[q.nextra] = keys[i];
            q.extra_values[q.nextra++] = vals[i];
        }
    }
    if (query_param(c, "repo", repo, sizeof(repo), &bad))
        q.repo = repo;
    if (query_param(c, "name", name, sizeof(name), &bad))
        q.name = name;
    if (query_param(c, "stage", stage, sizeof(stage), &bad))
        q.stage = stage;
    if (bad || (q.repo && coord_repo_check(repo, strlen(repo), &why) != 0) ||
        (q.name && coord_segment_check(name, strlen(name), &why) != 0)) {
        resp_error(c, 400, "bad_request", NULL, "repo, name or stage is malformed");
        return;
    }
    if (q.name && !q.repo) {
        resp_error(c, 400, "bad_request", NULL, "name needs repo");
        return;
    }
    if (q.stage && stages_rank(repo_policy(conn_server(c)->db), q.stage) < 0) {
        resp_error(c, 400, "bad_request", NULL, "no stage '%.40s'", stage);
        return;
    }
    if (query_param(c, "sha256", sha256, sizeof(sha256), &bad)) {
        if (bad || strlen(sha256) != 64 || hex_decode(sha256, 64, s256, 32) != 0) {
            resp_error(c, 400, "bad_request", NULL, "sha256 must be 64 hex digits");
            return;
        }
        q.sha256 = s256;
    }
    if (query_param(c, "sha1", sha1, sizeof(sha1), &bad)) {
        if (bad || strlen(sha1) != 40 || hex_decode(sha1, 40, s1, 20) != 0) {
            resp_error(c, 400, "bad_request", NULL, "sha1 must be 40 hex digits");
            return;
        }
        q.sha1 = s1;
    }
    if (!parse_time_param(c, "created_after", &q.created_after) ||
        !parse_time_param(c, "created_before", &q.created_before))
        return;
    size_t limit;
    char cursor[REPO_CURSOR_MAX], next[REPO_CURSOR_MAX] = "";
    if (page_query(c, &limit, cursor) != 0)
        return;
    struct search_page p = {c, json_array()};
    uint64_t scanned = 0;
    int rc = repo_search(conn_server(c)->db, &q, cursor, limit, add_hit, &p, next, &scanned);
    if (rc != 0) {
        json_decref(p.items);
        resp_list_error(c, rc, "search");
        return;
    }
    resp_json(c, 200, json_pack("{s:o,s:o,s:I}", "items", p.items, "next_cursor",
                                next_cursor_json(next), "scanned",
                                (json_int_t)scanned));
}

const struct handler search_handler = {.route = "search", .on_headers = search_headers};

/* ---- /api/v1/trace ---- */

static void trace_headers(struct conn *c)
{
    if (reject_unless_get(c))
        return;
    const char *base = "/api/v1/trace/";
    const char *path = conn_path(c) + strlen(base);
    size_t len = conn_path_len(c) - strlen(base);
    repo_db *db = conn_server(c)->db;
    json_t *out = NULL;
    int rc;
    if (len == 64 && !memchr(path, '/', len)) {
        uint8_t sha[32];
        if (hex_decode(path, 64, sha, 32) != 0) {
            resp_error(c, 400, "bad_request", NULL, "expected a SHA-256 of 64 hex digits");
            return;
        }
        if (!conn_principal(c)->authenticated) {
            resp_error(c, 401, "unauthorized", NULL, "trace needs a credential");
            return;
        }
        rc = repo_trace_sha256(db, sha, &out);
        if (rc == 0) {
            /* Only the coordinates the caller may read. */
            json_t *coords = json_object_get(out, "coordinates"), *kept = json_array();
            size_t i;
            json_t *co;
            json_array_foreach(coords, i, co)
            {
                if (auth_allows(conn_server(c)->auth, conn_principal(c), "read",
                                json_string_value(json_object_get(co, "repo"))))
                    json_array_append(kept, co);
            }
            json_object_set_new(out, "coordinates", kept);
            if (json_array_size(kept) == 0) {
                json_decref(out);
                rc = ARCA_E_NOTFOUND;
            }
        }
        if (rc == ARCA_E_NOTFOUND) {
            resp_error(c, 404, "not_found", NULL, "no stored content has sha256 %.64s", path);
            return;
        }
    } else {
        char *buf = malloc(len + 8);
        char *segs[4];
        size_t lens[4];
        const char *why;
        struct coord co;
        int n = buf ? path_split(path, len, buf, segs, lens, 4) : -1;
        if (n != 3 || strlen(segs[0]) != lens[0] || strlen(segs[1]) != lens[1] ||
            strlen(segs[2]) != lens[2] || coord_set(&co, segs[0], segs[1], segs[2], NULL, &why)) {
            free(buf);
            resp_error(c, 400, "bad_request", NULL,
                       "expected /api/v1/trace/{sha256} or /api/v1/trace/{repo}/{name}/{version}");
            return;
        }
        free(buf);
        if (!conn_authorize(c, "read", co.repo))
            return;
        rc = repo_trace_version(db, co.repo, co.name, co.version, &out);
        if (rc == ARCA_E_NOTFOUND) {
            resp_error(c, 404, "not_found", NULL, "no version %s/%s/%s", co.repo, co.name,
                       co.version);
            return;
        }
    }
    if (rc != 0) {
        resp_error(c, 500, "internal", NULL, "trace failed: %s", arca_strerror(rc));
        return;
    }
    resp_json(c, 200, out);
}

const struct handler trace_handler = {.route = "trace", .on_headers = trace_headers};
