/*
 * Credentials → principal, and principal + action + repository → allowed.
 * The only module that knows about secrets: it makes them, hashes them
 * (SHA-256; only hashes are stored, through storage/token.h), compares them
 * in constant time, and never logs them.
 *
 * Scopes are strings "ACTION" or "ACTION@REPO-GLOB" (fnmatch glob; no "@"
 * means every repository).  Actions: read, write, delete, promote:STAGE,
 * revoke, deploy-record, replicate, admin; admin implies every action.
 * replicate is what a replication peer's credential holds: it grants the
 * replication endpoints and nothing else.
 *
 * Credentials are API tokens (Authorization header) and, on the HTTPS
 * listener, client certificates the TLS layer verified against
 * tls.client_ca_file, mapped to an identity by [tls.clients]
 * (auth_certmap_set).
 *
 * Thread safety: an auth may be used from every worker thread at once.
 */
#ifndef ARCA_AUTH_H
#define ARCA_AUTH_H

#include "token.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_ACTION_MAX 48
#define AUTH_GLOB_MAX 64
#define AUTH_SECRET_LEN 69  /* "arca_" + 64 hex digits */
#define AUTH_FAILURES_MAX 10
#define AUTH_FAILURE_WINDOW_MS 60000
#define AUTH_ACTOR_MAX (5 + TOKEN_NAME_MAX) /* a token name, or "cert:" + a subject CN */

struct scope {
    char action[AUTH_ACTION_MAX + 1];
    char repo_glob[AUTH_GLOB_MAX + 1];  /* "*" when the scope names none */
};

/* Who a request is.  A caller-owned value; no pointers inside. */
struct principal {
    bool authenticated;  /* a valid token or a mapped client certificate; otherwise anonymous */
    char actor[AUTH_ACTOR_MAX + 1]; /* a token's name, "cert:NAME", or "anonymous" */
    char token_id[TOKEN_ID_LEN + 1]; /* "" unless a token */
    size_t nscopes;
    struct scope scopes[TOKEN_SCOPES_MAX];
};

/* Parses and checks one scope string; 0, or ARCA_E_INVALID with *why. */
int scope_parse(const char *s, struct scope *out, const char **why);
/* True when sc grants action on repo (repo NULL: an action not tied to one). */
bool scope_allows(const struct scope *sc, const char *action, const char *repo);

/*
 * True when s may name a token or its owner: 1-64 characters of
 * A-Z a-z 0-9 . _ @ + -, starting with a letter or digit.  Names become the
 * actor of audit events, so they are kept plain and unambiguous.
 */
bool auth_name_ok(const char *s);

typedef struct auth auth;

/*
 * Opens authentication over db.  anonymous_read is a comma-separated list of
 * repository globs readable without a credential ("" for none; a bad glob is
 * ARCA_E_CONFIG).  Bootstrap: <data_dir>/admin.token is created (0600) with a
 * new admin token when missing (*created = 1); when present but its token is
 * unknown to the index (a wiped index), the token is registered again.
 * 0, ARCA_E_CONFIG, ARCA_E_DB, -errno.
 */
int auth_open(const char *data_dir, repo_db *db, const char *anonymous_read, auth **out,
              int *created);
void auth_free(auth *a);

/*
 * Authenticates an Authorization header value (may be NULL) from remote_ip.
 *   0: a valid token; p describes it.
 *   1: no credential; p is the anonymous principal.
 *   ARCA_E_INVALID: a malformed, unknown, expired or revoked credential;
 *      *why says which ("unknown token", ...); p->token_id is set when known.
 *   ARCA_E_LIMITED: remote_ip is over the failure limit; nothing was checked.
 *   ARCA_E_DB: the index failed.
 * Failures count toward remote_ip's limit; the caller records the
 * auth.failure event (a synced write) off the event loop.
 */
int auth_authenticate(auth *a, const char *authorization, const char *remote_ip,
                      struct principal *p, const char **why);

/* A client certificate, as the TLS layer verified it. */
struct auth_cert {
    const char *cn;     /* the subject's one CN, printable ASCII; NULL when none (or several) */
    uint8_t sha256[32]; /* of the DER certificate (what `openssl x509 -fingerprint -sha256` shows) */
};

/*
 * Replaces the mapping from client certificates to identities (the
 * [tls.clients] section), atomically: a request authenticated afterwards
 * sees the new mapping.  keys[i] is a subject CN (as auth_name_ok) or
 * "sha256/" + 64 lower-case hex digits; scopes[i] a comma-separated list of
 * scopes (empty items are skipped; at least one, at most TOKEN_SCOPES_MAX).
 * A fingerprint entry wins over a CN entry.  The identity's actor is
 * "cert:" + the CN key, or for a fingerprint entry "cert:" + the
 * certificate's CN when that is a plain name (else "cert:sha256/" + the first
 * 16 hex digits).  a may be NULL: then the entries are only checked.
 * 0, or ARCA_E_CONFIG with err naming the entry ("tls.clients.KEY: ..."),
 * then nothing changed; -ENOMEM.
 */
int auth_certmap_set(auth *a, size_t n, const char *const *keys, const char *const *scopes,
                     char *err, size_t errlen);

/*
 * Authenticates a request by its connection's verified client certificate.
 *   0: the certificate is mapped; p is its identity, with its scopes.
 *   1: it is not mapped; p is the anonymous principal (no rights beyond
 *      anonymous reads).
 * Never counts as a failure for the limiter: the certificate is valid.
 */
int auth_authenticate_cert(auth *a, const struct auth_cert *cert, struct principal *p);

/* True when p may do action on repo (repo NULL: not tied to a repository). */
bool auth_allows(const auth *a, const struct principal *p, const char *action, const char *repo);

/*
 * Issues a new token: fills t->id, makes a secret (written to secret, which
 * holds AUTH_SECRET_LEN + 1 bytes; shown once, never stored) and stores the
 * token through the index (a synced write: call it off the event loop).
 * t->name, owner, scopes (already checked with scope_parse) and expires_ms
 * are the caller's.  0, ARCA_E_INVALID, ARCA_E_DB, ARCA_E_CRYPTO.
 */
int auth_token_issue(auth *a, struct token *t, const struct actor_ctx *who, char *secret);

/* The same for a caller without an auth (the CLI): db only, no limiter. */
int auth_token_issue_db(repo_db *db, struct token *t, const struct actor_ctx *who, char *secret);

#endif
