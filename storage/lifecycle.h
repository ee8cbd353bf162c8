/*
 * A version's life after its first file: stages and promotion behind quality
 * gates, revocation, deletion (a tombstone), properties, the build record and
 * the deployments recorded against it; and the read side auditors use:
 * history, search and trace.
 *
 * Every mutation here is an event applied through event.c's apply, like
 * uploads: the check against the current state (gates, frozen files, stage
 * order) and the write happen under apply's lock, in one synced batch with
 * the audit event.
 *
 * Rules (docs/ARCHITECTURE.md "Promotion"):
 *   - a version starts in the first stage; a promotion moves it forward one
 *     stage (several when the policy allows skipping), never back;
 *   - entering a stage needs that stage's gates (and, when skipping, those of
 *     every stage passed over);
 *   - once past the first stage its files are frozen (no new files), and so is
 *     its build record;
 *   - revocation is final and wins over any stage;
 *   - only a version still in the first stage (never promoted) and not revoked
 *     can be deleted; it leaves a tombstone and its coordinates cannot be
 *     used again;
 *   - properties are last-writer-wins per key by hybrid logical clock.
 */
#ifndef ARCA_LIFECYCLE_H
#define ARCA_LIFECYCLE_H

#include "repo.h"
#include "stages.h"

#include <jansson.h>

#define PROP_KEY_MAX 128
#define PROP_VALUE_MAX 1024
#define PROPS_PER_REQUEST 64
#define REASON_MAX 1024
#define ENV_MAX 128
#define TARGET_MAX 256
#define BUILD_RECORD_MAX (256u * 1024)

/* Installs the stage policy (copied; patterns compiled).  0 or ARCA_E_CONFIG (logged). */
int repo_set_policy(repo_db *db, const struct stage_policy *p);
const struct stage_policy *repo_policy(repo_db *db);

/*
 * What a lifecycle operation answers besides its return code.  On a refusal,
 * code is a short machine name ("version_frozen", "gates_unmet", ...) and
 * message says why in words; detail (may be NULL, owned) carries structured
 * facts such as the list of unmet gates.  On success, state is the version
 * afterwards, changed tells whether an event was written (false: a no-op such
 * as promoting to the current stage again), seq is that event, and detail
 * may hold what was checked (gates).  Free with op_result_clear.
 */
struct op_result {
    char code[40];
    char message[512];
    json_t *detail;
    struct version_state state;
    bool changed;
    uint64_t seq;
};
void op_result_clear(struct op_result *r);

/*
 * Returns: 0; ARCA_E_NOTFOUND (no such version); ARCA_E_INVALID (bad input,
 * code/message say which); ARCA_E_CONFLICT (the version's state forbids it:
 * frozen, revoked, deleted, backwards, skipping); ARCA_E_PRECONDITION (gates
 * unmet; detail = {"unmet": [...], "checked": [...]}); ARCA_E_DB.
 */
int repo_promote(repo_db *db, const char *repo, const char *name, const char *version,
                 const char *to, const char *reason, bool dry_run, const struct actor_ctx *who,
                 struct op_result *res);
int repo_revoke(repo_db *db, const char *repo, const char *name, const char *version,
                const char *reason, const struct actor_ctx *who, struct op_result *res);
int repo_delete_version(repo_db *db, const char *repo, const char *name, const char *version,
                        const char *reason, const struct actor_ctx *who, struct op_result *res);
/* changes: {"key": "value" | null, ...}; null removes the key. */
int repo_set_properties(repo_db *db, const char *repo, const char *name, const char *version,
                        const json_t *changes, const struct actor_ctx *who,
                        struct op_result *res);
/*
 * record: the native build record or an in-toto Statement v1 (SLSA provenance
 * v1).  It is normalized; an in-toto subject whose sha256 matches no file of
 * the version (or names a path holding other content) is refused.  On
 * success res->detail is the record as stored.
 */
int repo_put_build(repo_db *db, const char *repo, const char *name, const char *version,
                   const json_t *record, const struct actor_ctx *who, struct op_result *res);
int repo_record_deployment(repo_db *db, const char *environment, const char *target,
                           const char *repo, const char *name, const char *version,
                           const struct actor_ctx *who, struct op_result *res);

/*
 * repo_put_artifact with properties set by the upload (props: {"k": "v"},
 * may be NULL) and, on a refusal that is about the version rather than the
 * content (frozen, revoked, deleted), res->code/message saying so (res may be
 * NULL).
 */
int repo_put_artifact_ex(repo_db *db, const struct coord *c, const struct blob_digests *dig,
                         const struct blob_blocks *blocks, const json_t *props,
                         const struct actor_ctx *who, struct artifact *out, int *created,
                         struct op_result *res);

/* Checks a property key / value: 0 or ARCA_E_INVALID with *why. */
int prop_key_check(const char *k, const char **why);
int prop_value_check(const char *v, size_t len, const char **why);

/* ---- reads ---- */

/* A version's current stage (a record without one is in the first stage), and its rank. */
const char *repo_stage_of(repo_db *db, const struct version_state *vs);
int repo_stage_rank(repo_db *db, const struct version_state *vs);
/*
 * Would a new file at c be refused (version frozen, revoked or deleted)?  0,
 * or ARCA_E_CONFLICT with res->code/message saying why; apply checks again.
 */
int repo_check_new_file(repo_db *db, const struct coord *c, struct op_result *res);

int repo_get_version(repo_db *db, const char *repo, const char *name, const char *version,
                     struct version_state *out);
/* Current properties as a JSON object (new reference in *out). */
int repo_get_properties(repo_db *db, const char *repo, const char *name, const char *version,
                        json_t **out);
/* The build record (new reference), ARCA_E_NOTFOUND when none. */
int repo_get_build(repo_db *db, const char *repo, const char *name, const char *version,
                   json_t **out);
/*
 * The events about a version, oldest first, as stored JSON objects (each a
 * new reference passed to cb, which must decref it).  Bounded by limit, with
 * the opaque cursor scheme of the listings.
 */
int repo_version_history(repo_db *db, const char *repo, const char *name, const char *version,
                         const char *after, size_t limit,
                         int (*cb)(void *arg, json_t *event), void *arg, char *next);
/*
 * The newest version of repo/name that has reached at least stage and is
 * neither revoked nor deleted.  0 with version (COORD_SEGMENT_MAX + 1) set,
 * ARCA_E_NOTFOUND.  Looks at no more than the newest 10000 versions.
 */
int repo_latest_in_stage(repo_db *db, const char *repo, const char *name, const char *stage,
                         char *version);
/* Deployments newest first, optionally one environment (NULL: all). */
int repo_list_deployments(repo_db *db, const char *environment, const char *after, size_t limit,
                          int (*cb)(void *arg, json_t *rec), void *arg, char *next);

struct search_query {
    const char *repo, *name, *stage;       /* NULL: any */
    const char *prop_key, *prop_value;     /* one property filter drives an index */
    const char *extra_keys[8], *extra_values[8]; /* further property filters */
    size_t nextra;
    const uint8_t *sha256;                 /* 32 bytes, or NULL */
    const uint8_t *sha1;                   /* 20 bytes, or NULL */
    uint64_t created_after, created_before; /* ms; 0: unbounded */
};
/*
 * Search, answered from an index chosen by the most selective filter
 * (checksum → content references; property → property index; stage → stage
 * index; repo/name → version keys).  cb gets one JSON item (new reference).
 * scanned reports how many index entries were read.
 */
int repo_search(repo_db *db, const struct search_query *q, const char *after, size_t limit,
                int (*cb)(void *arg, json_t *item), void *arg, char *next, uint64_t *scanned);

/* Trace: a JSON object (new reference) with everything known about the content / version. */
int repo_trace_sha256(repo_db *db, const uint8_t sha256[32], json_t **out);
int repo_trace_version(repo_db *db, const char *repo, const char *name, const char *version,
                       json_t **out);

#endif
