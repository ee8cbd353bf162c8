#include "auth.h"

#include "arca_err.h"
#include "coord.h"
#include "log.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ANON_GLOBS_MAX 32
#define LIMITER_SLOTS 1024
#define TOUCH_SLOTS 256
#define TOUCH_EVERY_MS 60000
#define CACHE_SLOTS 256

/* Failed authentications per address, in a fixed table (a collision shares a slot). */
struct limiter_slot {
    char ip[48];
    uint64_t window_start_ms;
    uint32_t failures;
    bool logged;
};

struct touch_slot {
    char id[TOKEN_ID_LEN + 1];
    uint64_t at_ms;
};

/*
 * Successful lookups, by the secret's hash.  An entry is used only while the
 * index's token generation is the one it was made under, so a revocation
 * (which bumps the generation after its write) takes effect on the next
 * request; expiry is checked on every use.
 */
struct cache_slot {
    bool used;
    uint8_t hash[32];
    uint64_t gen;
    uint64_t expires_ms;
    struct principal p;
};

/* One [tls.clients] entry, parsed. */
struct certmap_entry {
    bool by_fp;                      /* by fingerprint, else by CN */
    uint8_t fp[32];
    char cn[TOKEN_NAME_MAX + 1];
    size_t nscopes;
    struct scope scopes[TOKEN_SCOPES_MAX];
};

/* The mapping of client certificates: immutable once built, swapped whole on reload. */
struct certmap {
    size_t n;
    struct certmap_entry e[];
};

struct auth {
    repo_db *db;
    pthread_mutex_t certmap_mu; /* guards the certmap pointer (a reload swaps it) */
    struct certmap *certmap;    /* NULL: no client is mapped */
    pthread_mutex_t cache_mu;
    struct cache_slot cache[CACHE_SLOTS];
    size_t nanon;
    char anon[ANON_GLOBS_MAX][AUTH_GLOB_MAX + 1];
    pthread_mutex_t mu;  /* guards limiter and touched */
    struct limiter_slot limiter[LIMITER_SLOTS];
    struct touch_slot touched[TOUCH_SLOTS];
};

/* ---- scopes ---- */

static const char *const plain_actions[] = {"read",          "write",     "delete", "revoke",
                                            "deploy-record", "replicate", "admin"};

static bool glob_ok(const char *g, size_t n)
{
    if (n == 0 || n > AUTH_GLOB_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)g[i]) || strchr("._-*?[]!", g[i])))
            return false;
    return true;
}

int scope_parse(const char *s, struct scope *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    const char *at = strchr(s, '@');
    size_t alen = at ? (size_t)(at - s) : strlen(s);
    if (alen == 0 || alen > AUTH_ACTION_MAX) {
        *why = "a scope needs an action (read, write, delete, promote:STAGE, revoke, "
               "deploy-record, replicate, admin)";
        return ARCA_E_INVALID;
    }
    bool known = false;
    for (size_t i = 0; i < sizeof(plain_actions) / sizeof(plain_actions[0]); i++)
        known |= strlen(plain_actions[i]) == alen && memcmp(plain_actions[i], s, alen) == 0;
    if (!known && alen > 8 && memcmp(s, "promote:", 8) == 0) {
        known = alen - 8 <= 32;
        for (size_t i = 8; i < alen && known; i++)
            known = islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) ||
                    s[i] == '-' || s[i] == '_';
    }
    if (!known) {
        *why = "unknown scope action (read, write, delete, promote:STAGE, revoke, deploy-record, "
               "replicate, admin)";
        return ARCA_E_INVALID;
    }
    memcpy(out->action, s, alen);
    if (at) {
        if (!glob_ok(at + 1, strlen(at + 1))) {
            *why = "a scope's repository glob may hold letters, digits, . _ - * ? [ ] ! "
                   "(1-64 characters)";
            return ARCA_E_INVALID;
        }
        snprintf(out->repo_glob, sizeof(out->repo_glob), "%s", at + 1);
    } else {
        snprintf(out->repo_glob, sizeof(out->repo_glob), "*");
    }
    return 0;
}

bool scope_allows(const struct scope *sc, const char *action, const char *repo)
{
    if (strcmp(sc->action, "admin") != 0 && strcmp(sc->action, action) != 0)
        return false;
    if (!repo)
        return strcmp(sc->repo_glob, "*") == 0 || strcmp(sc->action, "admin") == 0;
    return fnmatch(sc->repo_glob, repo, 0) == 0;
}

bool auth_name_ok(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= TOKEN_NAME_MAX && isalnum((unsigned char)s[0]) &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@+-") == n;
}

/* ---- secrets ---- */

/*
 * Every authenticated request hashes its secret.  EVP_sha256() makes
 * OpenSSL 3 look the algorithm up again on each use (a lock and a table
 * search, ~2% of a 4 KiB GET's CPU); it is fetched once instead.
 */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static void sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 32;
    pthread_once(&sha256_once, sha256_fetch);
    EVP_Digest(data, len, out, &n, sha256_md ? sha256_md : EVP_sha256(), NULL);
}

static int make_secret(char *secret, uint8_t hash[32])
{
    uint8_t raw[32];
    char hex[65];
    if (rand_bytes(raw, sizeof(raw)) != 0)
        return ARCA_E_CRYPTO;
    hex_encode(raw, sizeof(raw), hex);
    OPENSSL_cleanse(raw, sizeof(raw));
    snprintf(secret, AUTH_SECRET_LEN + 1, "arca_%s", hex);
    OPENSSL_cleanse(hex, sizeof(hex));
    sha256(secret, strlen(secret), hash);
    return 0;
}

static int issue_with_secret(repo_db *db, struct token *t, const struct actor_ctx *who,
                             const uint8_t hash[32])
{
    uint8_t rid[16];
    if (rand_bytes(rid, sizeof(rid)) != 0)
        return ARCA_E_CRYPTO;
    hex_encode(rid, sizeof(rid), t->id);
    return repo_token_create(db, t, hash, who);
}

int auth_token_issue_db(repo_db *db, struct token *t, const struct actor_ctx *who, char *secret)
{
    uint8_t hash[32];
    int rc = make_secret(secret, hash);
    if (rc == 0)
        rc = issue_with_secret(db, t, who, hash);
    if (rc != 0)
        OPENSSL_cleanse(secret, AUTH_SECRET_LEN + 1);
    return rc;
}

int auth_token_issue(auth *a, struct token *t, const struct actor_ctx *who, char *secret)
{
    return auth_token_issue_db(a->db, t, who, secret);
}

/* ---- bootstrap ---- */

static void admin_template(struct token *t)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "admin");
    snprintf(t->owner, sizeof(t->owner), "admin");
    snprintf(t->scopes[0], sizeof(t->scopes[0]), "admin");
    t->nscopes = 1;
}

static int bootstrap(auth *a, const char *data_dir, int *created)
{
    char path[PATH_MAX], *text = NULL;
    size_t len = 0;
    uint8_t hash[32];
    struct token t;
    struct actor_ctx who = {"bootstrap", NULL, NULL};
    int rc;
    snprintf(path, sizeof(path), "%s/admin.token", data_dir);
    rc = fs_read_small(path, 4096, &text, &len);
    if (rc == -ENOENT) {
        char secret[AUTH_SECRET_LEN + 2];
        if ((rc = make_secret(secret, hash)) != 0)
            return rc;
        /* The file first: a crash before the index write is mended by the next start. */
        size_t n = strlen(secret);
        secret[n] = '\n';
        rc = fs_write_atomic(path, secret, n + 1, 0600);
        OPENSSL_cleanse(secret, sizeof(secret));
        if (rc != 0)
            return rc;
        admin_template(&t);
        if ((rc = issue_with_secret(a->db, &t, &who, hash)) != 0)
            return rc;
        *created = 1;
        return 0;
    }
    if (rc != 0)
        return rc;
    while (len > 0 && isspace((unsigned char)text[len - 1]))
        len--;
    sha256(text, len, hash);
    OPENSSL_cleanse(text, len);
    free(text);
    if (len == 0)
        return ARCA_E_CONFIG;
    rc = repo_token_find(a->db, hash, &t);
    if (rc == ARCA_E_NOTFOUND) {
        LOG_W("%s names a token the index does not know; registering it again as admin", path);
        admin_template(&t);
        rc = issue_with_secret(a->db, &t, &who, hash);
    }
    return rc;
}

int auth_open(const char *data_dir, repo_db *db, const char *anonymous_read, auth **out,
              int *created)
{
    int rc = 0;
    auth *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->db = db;
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->cache_mu, NULL);
    pthread_mutex_init(&a->certmap_mu, NULL);
    *created = 0;
    /* anonymous_read: "pub-*, docs" */
    const char *p = anonymous_read ? anonymous_read : "";
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        if (n == 0)
            break;
        if (a->nanon == ANON_GLOBS_MAX || !glob_ok(p, n)) {
            LOG_E("auth.anonymous_read: '%.*s' is not a repository glob", (int)n, p);
            rc = ARCA_E_CONFIG;
            goto out;
        }
        memcpy(a->anon[a->nanon], p, n);
        a->anon[a->nanon++][n] = '\0';
        p += n;
    }
    if ((rc = bootstrap(a, data_dir, created)) != 0)
        goto out;
    *out = a;
    a = NULL;
out:
    if (a) {
        pthread_mutex_destroy(&a->mu);
        pthread_mutex_destroy(&a->cache_mu);
        pthread_mutex_destroy(&a->certmap_mu);
        free(a);
    }
    return rc;
}

void auth_free(auth *a)
{
    if (!a)
        return;
    free(a->certmap);
    pthread_mutex_destroy(&a->certmap_mu);
    pthread_mutex_destroy(&a->cache_mu);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

/* ---- the limiter ---- */

static struct limiter_slot *slot_for(auth *a, const char *ip)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *s = ip; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return &a->limiter[h % LIMITER_SLOTS];
}

static bool limited(auth *a, const char *ip, uint64_t now)
{
    bool over = false;
    pthread_mutex_lock(&a->mu);
    struct limiter_slot *s = slot_for(a, ip);
    if (strcmp(s->ip, ip) == 0 && now - s->window_start_ms < AUTH_FAILURE_WINDOW_MS)
        over = s->failures >= AUTH_FAILURES_MAX;
    pthread_mutex_unlock(&a->mu);
    return over;
}

static void count_failure(auth *a, const char *ip, uint64_t now)
{
    pthread_mutex_lock(&a->mu);
    struct limiter_slot *s = slot_for(a, ip);
    if (strcmp(s->ip, ip) != 0 || now - s->window_start_ms >= AUTH_FAILURE_WINDOW_MS) {
        snprintf(s->ip, sizeof(s->ip), "%s", ip);
        s->window_start_ms = now;
        s->failures = 0;
        s->logged = false;
    }
    s->failures++;
    if (s->failures >= AUTH_FAILURES_MAX && !s->logged) {
        s->logged = true;
        LOG_W("auth: %u failed authentications from %s within %us; refusing its credentials "
              "until the window passes",
              s->failures, ip, AUTH_FAILURE_WINDOW_MS / 1000);
    }
    pthread_mutex_unlock(&a->mu);
}

/* Records a token's last use at most once a minute (an unsynced index write). */
static void touch(auth *a, const char *id, uint64_t now)
{
    uint64_t h = 0;
    for (const char *s = id; *s; s++)
        h = h * 31 + (unsigned char)*s;
    bool due;
    pthread_mutex_lock(&a->mu);
    struct touch_slot *t = &a->touched[h % TOUCH_SLOTS];
    due = strcmp(t->id, id) != 0 || now - t->at_ms >= TOUCH_EVERY_MS;
    if (due) {
        snprintf(t->id, sizeof(t->id), "%s", id);
        t->at_ms = now;
    }
    pthread_mutex_unlock(&a->mu);
    if (due)
        repo_token_touch(a->db, id, now);
}

/* ---- authentication ---- */

static void anonymous(struct principal *p)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->actor, sizeof(p->actor), "anonymous");
}

/* Finds the secret in an Authorization value; false when malformed. */
static bool extract_secret(const char *h, char *buf, size_t cap, const char **secret,
                           size_t *len)
{
    if (strncasecmp(h, "Bearer ", 7) == 0) {
        h += 7;
        while (*h == ' ')
            h++;
        *secret = h;
        *len = strlen(h);
        return *len > 0;
    }
    if (strncasecmp(h, "Basic ", 6) == 0) {
        h += 6;
        while (*h == ' ')
            h++;
        size_t n = strlen(h);
        if (n == 0 || n % 4 != 0 || n / 4 * 3 >= cap)
            return false;
        int d = EVP_DecodeBlock((unsigned char *)buf, (const unsigned char *)h, (int)n);
        if (d < 0)
            return false;
        for (size_t k = n; k > 0 && h[k - 1] == '='; k--)
            d--;
        buf[d] = '\0';
        const char *colon = memchr(buf, ':', (size_t)d);
        if (!colon)
            return false;
        *secret = colon + 1;
        *len = (size_t)d - (size_t)(colon + 1 - buf);
        return *len > 0;
    }
    return false;
}

int auth_authenticate(auth *a, const char *authorization, const char *remote_ip,
                      struct principal *p, const char **why)
{
    char buf[512];
    const char *secret = NULL;
    size_t len = 0;
    uint8_t hash[32];
    struct token t;
    uint64_t now = time_now_ms();
    int rc;

    anonymous(p);
    *why = NULL;
    if (!authorization || !*authorization)
        return 1;
    if (limited(a, remote_ip, now)) {
        *why = "too many failed authentications from this address";
        return ARCA_E_LIMITED;
    }
    if (!extract_secret(authorization, buf, sizeof(buf), &secret, &len)) {
        *why = "malformed Authorization header (use 'Bearer TOKEN' or Basic with the token as "
               "password)";
        rc = ARCA_E_INVALID;
        goto fail;
    }
    sha256(secret, len, hash);
    OPENSSL_cleanse(buf, sizeof(buf));
    uint64_t gen = repo_token_generation(a->db);
    struct cache_slot *slot = &a->cache[(hash[0] | (unsigned)hash[1] << 8) % CACHE_SLOTS];
    pthread_mutex_lock(&a->cache_mu);
    bool hit = slot->used && slot->gen == gen && CRYPTO_memcmp(slot->hash, hash, 32) == 0 &&
               (!slot->expires_ms || now < slot->expires_ms);
    if (hit)
        *p = slot->p;
    pthread_mutex_unlock(&a->cache_mu);
    if (hit) {
        touch(a, p->token_id, now);
        return 0;
    }
    /*
     * The lookup is by hash, so no secret is compared byte by byte; the hash
     * found is compared again in constant time for defence in depth.
     */
    rc = repo_token_find(a->db, hash, &t);
    if (rc == ARCA_E_NOTFOUND) {
        *why = "unknown token";
        rc = ARCA_E_INVALID;
        goto fail;
    }
    if (rc != 0)
        return rc;
    snprintf(p->token_id, sizeof(p->token_id), "%s", t.id);
    if (t.revoked_ms) {
        *why = "revoked token";
        rc = ARCA_E_INVALID;
        goto fail;
    }
    if (t.expires_ms && now >= t.expires_ms) {
        *why = "expired token";
        rc = ARCA_E_INVALID;
        goto fail;
    }
    for (size_t i = 0; i < t.nscopes; i++) {
        const char *sw;
        if (scope_parse(t.scopes[i], &p->scopes[p->nscopes], &sw) == 0)
            p->nscopes++;
    }
    p->authenticated = true;
    snprintf(p->actor, sizeof(p->actor), "%s", t.name);
    touch(a, t.id, now);
    pthread_mutex_lock(&a->cache_mu);
    slot->used = true;
    memcpy(slot->hash, hash, 32);
    slot->gen = gen; /* read before the lookup: a revocation since then makes this stale */
    slot->expires_ms = t.expires_ms;
    slot->p = *p;
    pthread_mutex_unlock(&a->cache_mu);
    return 0;
fail:
    OPENSSL_cleanse(buf, sizeof(buf));
    count_failure(a, remote_ip, now);
    return rc;
}

bool auth_allows(const auth *a, const struct principal *p, const char *action, const char *repo)
{
    if (p->authenticated)
        for (size_t i = 0; i < p->nscopes; i++)
            if (scope_allows(&p->scopes[i], action, repo))
                return true;
    /* What anyone may read, a token holder may read too, whatever its scopes. */
    if (strcmp(action, "read") != 0 || !repo)
        return false;
    for (size_t i = 0; i < a->nanon; i++)
        if (fnmatch(a->anon[i], repo, 0) == 0)
            return true;
    return false;
}

/* ---- client certificates ---- */

/* Parses one entry's comma-separated scope list into e; 0 or ARCA_E_CONFIG with err set. */
static int parse_scope_list(const char *key, const char *list, struct certmap_entry *e, char *err,
                            size_t errlen)
{
    const char *p = list;
    e->nscopes = 0;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == 0)
            break;
        char item[TOKEN_SCOPE_MAX + 1];
        const char *why = NULL;
        if (n > TOKEN_SCOPE_MAX) {
            snprintf(err, errlen, "tls.clients.%s: scope '%.40s...' is too long", key, p);
            return ARCA_E_CONFIG;
        }
        if (e->nscopes == TOKEN_SCOPES_MAX) {
            snprintf(err, errlen, "tls.clients.%s: at most %d scopes", key, TOKEN_SCOPES_MAX);
            return ARCA_E_CONFIG;
        }
        memcpy(item, p, n);
        item[n] = '\0';
        if (scope_parse(item, &e->scopes[e->nscopes], &why) != 0) {
            snprintf(err, errlen, "tls.clients.%s: scope '%s': %s", key, item, why);
            return ARCA_E_CONFIG;
        }
        e->nscopes++;
        p += strcspn(p, ",");
    }
    if (e->nscopes == 0) {
        snprintf(err, errlen, "tls.clients.%s: give at least one scope (e.g. replicate)", key);
        return ARCA_E_CONFIG;
    }
    return 0;
}

int auth_certmap_set(auth *a, size_t n, const char *const *keys, const char *const *scopes,
                     char *err, size_t errlen)
{
    struct certmap *m = calloc(1, sizeof(*m) + n * sizeof(m->e[0]));
    if (!m)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        struct certmap_entry *e = &m->e[i];
        const char *k = keys[i];
        if (strncmp(k, "sha256/", 7) == 0) {
            e->by_fp = true;
            if (strlen(k) != 7 + 64 || hex_decode(k + 7, 64, e->fp, 32) != 0) {
                snprintf(err, errlen, "tls.clients.%.80s: a fingerprint is sha256/ and 64 hex "
                                      "digits", k);
                rc = ARCA_E_CONFIG;
                goto out;
            }
        } else if (auth_name_ok(k)) {
            snprintf(e->cn, sizeof(e->cn), "%s", k);
        } else {
            snprintf(err, errlen, "tls.clients.%.80s: not a subject CN (1-%d characters of "
                                  "A-Z a-z 0-9 . _ @ + -) or sha256/ fingerprint", k,
                     TOKEN_NAME_MAX);
            rc = ARCA_E_CONFIG;
            goto out;
        }
        for (size_t j = 0; j < i; j++) {
            const struct certmap_entry *o = &m->e[j];
            if (o->by_fp == e->by_fp &&
                (e->by_fp ? memcmp(o->fp, e->fp, 32) == 0 : strcasecmp(o->cn, e->cn) == 0)) {
                snprintf(err, errlen, "tls.clients.%s: given twice", k);
                rc = ARCA_E_CONFIG;
                goto out;
            }
        }
        if ((rc = parse_scope_list(k, scopes[i], e, err, errlen)) != 0)
            goto out;
    }
    m->n = n;
    if (a) {
        pthread_mutex_lock(&a->certmap_mu);
        struct certmap *old = a->certmap;
        a->certmap = m;
        pthread_mutex_unlock(&a->certmap_mu);
        m = old; /* requests copy what they need under the lock: nothing points into it */
    }
out:
    free(m);
    return rc;
}

int auth_authenticate_cert(auth *a, const struct auth_cert *cert, struct principal *p)
{
    anonymous(p);
    pthread_mutex_lock(&a->certmap_mu);
    const struct certmap *m = a->certmap;
    const struct certmap_entry *hit = NULL;
    /* A fingerprint names one certificate: it wins over a CN, which any reissue shares. */
    for (size_t i = 0; m && i < m->n && !hit; i++)
        if (m->e[i].by_fp && CRYPTO_memcmp(m->e[i].fp, cert->sha256, 32) == 0)
            hit = &m->e[i];
    for (size_t i = 0; m && cert->cn && i < m->n && !hit; i++)
        if (!m->e[i].by_fp && strcasecmp(m->e[i].cn, cert->cn) == 0)
            hit = &m->e[i];
    if (hit) {
        p->authenticated = true;
        if (!hit->by_fp) {
            snprintf(p->actor, sizeof(p->actor), "cert:%s", hit->cn);
        } else if (cert->cn && auth_name_ok(cert->cn)) {
            snprintf(p->actor, sizeof(p->actor), "cert:%s", cert->cn);
        } else {
            char hex[17];
            hex_encode(cert->sha256, 8, hex);
            snprintf(p->actor, sizeof(p->actor), "cert:sha256/%s", hex);
        }
        p->nscopes = hit->nscopes;
        memcpy(p->scopes, hit->scopes, hit->nscopes * sizeof(hit->scopes[0]));
    }
    pthread_mutex_unlock(&a->certmap_mu);
    return hit ? 0 : 1;
}
