/*
 * API tokens in the index.  Only SHA-256 hashes of secrets are stored; the
 * secret itself never reaches storage.  Creating and revoking a token, and a
 * failed authentication, are events applied through the one apply path, so
 * they are in the audit log.  Scope strings are stored as given; auth/ parses
 * and checks them.
 */
#ifndef ARCA_TOKEN_H
#define ARCA_TOKEN_H

#include "repo.h"

#include <stddef.h>
#include <stdint.h>

#define TOKEN_ID_LEN 32       /* hex characters */
#define TOKEN_NAME_MAX 64
#define TOKEN_SCOPES_MAX 32
#define TOKEN_SCOPE_MAX 128   /* characters of one scope string */

struct token {
    char id[TOKEN_ID_LEN + 1];
    char name[TOKEN_NAME_MAX + 1];
    char owner[TOKEN_NAME_MAX + 1];
    char created_by[128];
    uint64_t created_ms;
    uint64_t expires_ms;      /* 0: never */
    uint64_t revoked_ms;      /* 0: active */
    uint64_t last_used_ms;    /* 0: never; kept outside the event log (see repo_token_touch) */
    size_t nscopes;
    char scopes[TOKEN_SCOPES_MAX][TOKEN_SCOPE_MAX + 1];
};

/*
 * Stores a new token t (t->id, name, owner, scopes, expires_ms set by the
 * caller; created_ms and created_by are filled from the event) under the hash
 * of its secret.  0, ARCA_E_EXISTS (id or hash already known), ARCA_E_INVALID,
 * ARCA_E_DB.
 */
int repo_token_create(repo_db *db, struct token *t, const uint8_t secret_hash[32],
                      const struct actor_ctx *who);

/*
 * Revokes token id; out (may be NULL) receives the token as it now is.
 * Revoking a revoked token is a no-op 0.  0, ARCA_E_NOTFOUND, ARCA_E_DB.
 */
int repo_token_revoke(repo_db *db, const char *id, const struct actor_ctx *who, struct token *out);

/*
 * A counter that changes whenever a token is created or revoked in this
 * process (locally or, later, by replication: both go through apply).  A
 * cache of lookups is valid while the counter is unchanged.
 */
uint64_t repo_token_generation(repo_db *db);

/*
 * Finds a token by the hash of its secret (last_used_ms is not read: this is
 * the per-request path).  0, ARCA_E_NOTFOUND, ARCA_E_DB.
 */
int repo_token_find(repo_db *db, const uint8_t secret_hash[32], struct token *out);
/* Finds a token by id.  0, ARCA_E_NOTFOUND, ARCA_E_DB. */
int repo_token_get(repo_db *db, const char *id, struct token *out);

/* Lists tokens by id, paginated as the other listings (repo.h). */
int repo_token_list(repo_db *db, const char *after, size_t limit,
                    int (*cb)(void *arg, const struct token *t), void *arg, char *next);

/*
 * Records when a token was last used.  Not an event (using a token changes
 * nothing): a plain, unsynced index write, so callers rate-limit it.
 */
int repo_token_touch(repo_db *db, const char *id, uint64_t when_ms);

/*
 * Records a failed authentication (an auth.failure event) with a short
 * reason ("unknown token", "expired", ...) and the token id when known.
 * Never pass the secret.
 */
int repo_auth_failure(repo_db *db, const struct actor_ctx *who, const char *reason,
                      const char *token_id);

#endif
