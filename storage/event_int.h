/*
 * Between apply (event.c) and the stage functions of each area (event.c for
 * uploads and tokens, lifecycle.c for promotion, properties, builds,
 * deployments).  A stage function runs under apply's lock: it validates the
 * event against the current state and adds its index changes to the batch;
 * apply then appends the event record and writes the batch synced.
 */
#ifndef ARCA_EVENT_INT_H
#define ARCA_EVENT_INT_H

#include "repo_int.h"

#include <jansson.h>

struct op_result;

#define SUBJECT_MAX (COORD_REPO_MAX + 2 * COORD_SEGMENT_MAX + COORD_PATH_MAX + 4)
#define ACTOR_FIELD_MAX 256

enum event_action {
    EV_ARTIFACT_PUT,
    EV_TOKEN_CREATE,
    EV_TOKEN_REVOKE,
    EV_AUTH_FAILURE,
    EV_VERSION_PROMOTE,
    EV_VERSION_REVOKE,
    EV_VERSION_DELETE,
    EV_PROPERTY_SET,
    EV_BUILD_PUT,
    EV_DEPLOYMENT_RECORD,
    EV_COUNT
};

extern const char *const event_action_names[EV_COUNT];

struct event {
    enum event_action action;
    const struct actor_ctx *who;
    /*
     * Replication will fill these from the remote event; a local event leaves
     * origin NULL and hlc 0, and gets this centre, its local seq and hlc_now().
     */
    const char *origin;
    uint64_t origin_seq;
    uint64_t hlc;
    /* A remote event is recorded as its origin wrote it: subject and details verbatim. */
    const char *remote_subject;
    json_t *remote_details;
    union {
        struct {
            const struct coord *c;
            const struct blob_digests *dig;
            const struct blob_blocks *blocks;
            const json_t *props;      /* properties set with the upload, or NULL */
            struct artifact *out;
            struct op_result *res;    /* why a refusal, or NULL */
        } put;
        struct {
            struct token *t;          /* in: the new token; out: as stored */
            const uint8_t *hash;      /* SHA-256 of the secret */
        } tcreate;
        struct {
            const char *id;
            struct token *out;        /* may be NULL */
        } trevoke;
        struct {
            const char *reason;
            const char *token_id;     /* may be NULL */
        } afail;
        /* Every version-level action: args holds its input (see lifecycle.c). */
        struct {
            const char *repo, *name, *version;
            const json_t *args;
            bool dry_run;             /* promotion: check only, write nothing */
            struct op_result *res;
        } vop;
    } u;
};

/* What an action's stage function hands back to apply. */
struct staged {
    bool noop;                 /* the state already holds exactly this change */
    bool dry;                  /* checked only: write nothing */
    json_t *details;           /* owned by apply after the call */
    char subject[SUBJECT_MAX];
    struct repo_stats delta;   /* event_count excluded: apply counts events */
};

/* True for an event another centre wrote (replication). */
#define EV_REMOTE(ev) ((ev)->origin != NULL)
/* The centre id an event is attributed to. */
const char *event_origin(const repo_db *db, const struct event *ev);
/* (hlc, origin) order: negative when a is earlier than b. */
int hlc_origin_cmp(uint64_t ha, const char *oa, uint64_t hb, const char *ob);

/* The last origin seq applied from origin (0: none).  0 or ARCA_E_DB. */
int origin_last(repo_db *db, const char *origin, uint64_t *last);

/* Applies one event (event.c).  *applied: an event was written. */
int apply(repo_db *db, const struct event *ev, bool *applied);

/* Stage functions of lifecycle.c. */
int stage_version_op(repo_db *db, const struct event *ev, uint64_t seq, uint64_t hlc,
                     rocksdb_writebatch_t *b, struct staged *st);
/* Called by stage_artifact_put: may files still be added?  Fills the version's state. */
int lifecycle_check_put(repo_db *db, const struct event *ev, const struct coord *c,
                        struct version_state *vs, struct op_result *res);
/* Applies properties given with an upload (LWW); adds to details. */
int lifecycle_put_props(repo_db *db, const struct coord *c, const json_t *props, uint64_t seq,
                        uint64_t hlc, const char *origin, rocksdb_writebatch_t *b,
                        json_t *details);
/* The current value of a property (malloc'd), or NULL when unset (lifecycle.c). */
char *prop_current(repo_db *db, const char *repo, const char *name, const char *version,
                   const char *k);
/* Indexes an event under its version (cf vevents). */
void index_version_event(repo_db *db, rocksdb_writebatch_t *b, const char *repo,
                         const char *name, const char *version, uint64_t seq,
                         enum event_action action);
/* Writes a version record under both its keys (versions and vtime). */
int put_version_state(repo_db *db, rocksdb_writebatch_t *b, const char *repo, const char *name,
                      const char *version, const struct version_state *vs);

/* Helpers shared by stage functions (event.c). */
void clean_label(char *dst, size_t cap, const char *src);
json_t *label_json(const char *s);
json_t *hex_json(const uint8_t *b, size_t len);
int batch_put(rocksdb_writebatch_t *b, repo_db *db, enum repo_cf cf, const char *k, size_t kl,
              char *v, const size_t *vl);

#endif
