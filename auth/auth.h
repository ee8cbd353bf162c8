/*
 * Credentials → actor.  The only module that knows about tokens.
 *
 * For now there is one credential: the admin token, 256 random bits created
 * on first start into <data>/admin.token (mode 0600).  Only its SHA-256 is
 * kept in memory and comparisons are constant-time.  Requests without a valid
 * credential are identified as "anonymous"; scoped tokens and enforcement
 * come with the authentication issue.
 */
#ifndef ARCA_AUTH_H
#define ARCA_AUTH_H

#include <stddef.h>

typedef struct auth auth;

/*
 * Loads <data_dir>/admin.token, creating it (0600) if missing; *created is
 * set to 1 when a new token was written.  0 or -errno / ARCA_E_CRYPTO.
 */
int auth_open(const char *data_dir, auth **out, int *created);
void auth_free(auth *a);

/*
 * Identifies the caller from an Authorization header value (may be NULL):
 * "Bearer <token>" or "Basic base64(user:token)".  Writes the actor name into
 * actor (size actorlen): "admin" for the admin token, "anonymous" otherwise.
 * Returns 0 for a recognized credential, 1 for none, ARCA_E_INVALID for a
 * credential that does not match (the caller decides whether that is a 401).
 */
int auth_identify(const auth *a, const char *authorization, char *actor, size_t actorlen);

#endif
