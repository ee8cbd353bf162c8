#include "config.h"

#include "arca_err.h"
#include "log.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

enum setting_type { T_STR, T_UINT, T_SIZE, T_BOOL };

struct setting {
    const char *section;
    const char *key;
    enum setting_type type;
    size_t offset;
    size_t size;  /* for T_STR: the buffer size */
    const char *def;
    uint64_t min, max;  /* for T_UINT / T_SIZE */
};

#define F(field) offsetof(struct arca_config, field), sizeof(((struct arca_config *)0)->field)

static const struct setting settings[] = {
    {"server", "listen", T_STR, F(listen), "127.0.0.1:8080", 0, 0},
    {"server", "workers", T_UINT, F(workers), "0", 0, 64},
    {"server", "io_threads", T_UINT, F(io_threads), "0", 0, 64},
    {"server", "max_connections", T_UINT, F(max_connections), "1024", 1, 1000000},
    {"server", "max_header_bytes", T_SIZE, F(max_header_bytes), "16K", 1024, 1 << 20},
    {"server", "max_url_bytes", T_SIZE, F(max_url_bytes), "8K", 256, 1 << 20},
    {"server", "max_upload_bytes", T_SIZE, F(max_upload_bytes), "64G", 0, UINT64_MAX},
    {"server", "header_timeout", T_UINT, F(header_timeout), "10", 1, 3600},
    {"server", "idle_timeout", T_UINT, F(idle_timeout), "60", 1, 86400},
    {"server", "shutdown_grace", T_UINT, F(shutdown_grace), "30", 0, 3600},
    {"server", "access_log", T_BOOL, F(access_log), "true", 0, 0},
    {"storage", "data_dir", T_STR, F(data_dir), "./arca-data", 0, 0},
    {"storage", "verify_on_download", T_BOOL, F(verify_on_download), "true", 0, 0},
    {"storage", "file_cache", T_SIZE, F(file_cache), "8M", 0, 1ull << 30},
    {"tls", "listen", T_STR, F(tls_listen), "", 0, 0},
    {"tls", "cert_file", T_STR, F(tls_cert_file), "", 0, 0},
    {"tls", "key_file", T_STR, F(tls_key_file), "", 0, 0},
    {"auth", "anonymous_read", T_STR, F(anonymous_read), "", 0, 0},
    {"log", "level", T_STR, F(log_level), "info", 0, 0},
    {"centre", "id", T_STR, F(centre_id), "dc1", 0, 0},
    {"tls", "client_ca_file", T_STR, F(tls_client_ca_file), "", 0, 0},
    {"tls", "client_auth", T_STR, F(tls_client_auth), "off", 0, 0},
    {"replication", "poll_interval_ms", T_UINT, F(repl_poll_ms), "200", 10, 60000},
    {"replication", "batch", T_UINT, F(repl_batch), "500", 1, 1000},
    {"replication", "retry_max_seconds", T_UINT, F(repl_retry_max), "30", 1, 3600},
    {"replication", "connect_timeout", T_UINT, F(repl_connect_timeout), "5", 1, 300},
    {"replication", "parallel_fetches", T_UINT, F(repl_parallel_fetches), "4", 1, 16},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static int apply(struct arca_config *cfg, const struct setting *s, const char *value, char *err,
                 size_t errlen)
{
    char *field = (char *)cfg + s->offset;
    switch (s->type) {
    case T_STR:
        if (strlen(value) >= s->size) {
            snprintf(err, errlen, "%s.%s: value longer than %zu bytes", s->section, s->key,
                     s->size - 1);
            return ARCA_E_CONFIG;
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case T_BOOL:
        if (!strcasecmp(value, "true") || !strcasecmp(value, "yes") || !strcmp(value, "1") ||
            !strcasecmp(value, "on"))
            *(bool *)field = true;
        else if (!strcasecmp(value, "false") || !strcasecmp(value, "no") ||
                 !strcmp(value, "0") || !strcasecmp(value, "off"))
            *(bool *)field = false;
        else {
            snprintf(err, errlen, "%s.%s: expected true or false, got '%s'", s->section, s->key,
                     value);
            return ARCA_E_CONFIG;
        }
        return 0;
    case T_UINT:
    case T_SIZE: {
        uint64_t v;
        int rc;
        if (s->type == T_SIZE) {
            rc = parse_size(value, &v);
        } else {
            char *end;
            v = strtoull(value, &end, 10);
            rc = (*value && *value != '-' && *end == '\0') ? 0 : ARCA_E_INVALID;
        }
        if (rc != 0) {
            snprintf(err, errlen, "%s.%s: expected %s, got '%s'", s->section, s->key,
                     s->type == T_SIZE ? "a size such as 16K or 4G" : "a whole number", value);
            return ARCA_E_CONFIG;
        }
        if (v < s->min || v > s->max) {
            snprintf(err, errlen, "%s.%s: %s is outside %llu..%llu", s->section, s->key, value,
                     (unsigned long long)s->min, (unsigned long long)s->max);
            return ARCA_E_CONFIG;
        }
        *(uint64_t *)field = v;
        return 0;
    }
    }
    return ARCA_E_CONFIG;
}

void config_init_defaults(struct arca_config *cfg)
{
    char err[256];
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NSETTINGS; i++)
        if (apply(cfg, &settings[i], settings[i].def, err, sizeof(err)) != 0)
            abort(); /* a bad embedded default is a programming error */
    stages_init_defaults(&cfg->stages);
}

int config_set(struct arca_config *cfg, const char *section, const char *key, const char *value,
               char *err, size_t errlen)
{
    if (strcmp(section, "tls.clients") == 0)
        return config_tls_client_set(cfg, key, value, err, errlen);
    if (strncmp(section, "peer.", 5) == 0)
        return config_peer_set(cfg, section + 5, key, value, err, errlen);
    bool known_section = false;
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (strcmp(settings[i].section, section) != 0)
            continue;
        known_section = true;
        if (strcmp(settings[i].key, key) == 0)
            return apply(cfg, &settings[i], value, err, errlen);
    }
    if (!known_section)
        snprintf(err, errlen, "unknown section [%s]", section);
    else
        snprintf(err, errlen, "unknown key '%s' in section [%s]", key, section);
    return ARCA_E_CONFIG;
}

struct load_ctx {
    struct arca_config *cfg;
    FILE *f;
    int line;      /* lines read so far: the current line while a handler runs */
    char msg[256];
    int failed;
    /* Every [section] key set so far, "section\nkey": a second one is an error. */
    char (*seen)[96];
    int nseen, capseen;
    bool cont; /* the line being handled is a continuation line */
};

/* false (with ctx->msg) when section's key was set before in this file. */
static bool first_setting(struct load_ctx *ctx, const char *section, const char *name)
{
    char k[96];
    snprintf(k, sizeof(k), "%s\n%s", section, name);
    for (int i = 0; i < ctx->nseen; i++) {
        if (strcmp(ctx->seen[i], k) == 0) {
            snprintf(ctx->msg, sizeof(ctx->msg),
                     "'%s' in section [%s] is set twice (the file must say each setting once)",
                     name, section);
            return false;
        }
    }
    if (ctx->nseen == ctx->capseen) {
        int cap = ctx->capseen ? 2 * ctx->capseen : 64;
        void *n = realloc(ctx->seen, (size_t)cap * sizeof(*ctx->seen));
        if (!n)
            return true; /* no memory to remember it: the setting still applies */
        ctx->seen = n;
        ctx->capseen = cap;
    }
    memcpy(ctx->seen[ctx->nseen++], k, sizeof(k));
    return true;
}

/* inih's reader, counting lines so that gate rules can remember where they came from. */
static char *read_line(char *str, int num, void *stream)
{
    struct load_ctx *ctx = stream;
    char *r = fgets(str, num, ctx->f);
    if (r) {
        ctx->line++;
        ctx->cont = str[0] == ' ' || str[0] == '\t'; /* inih: continues the previous value */
    }
    return r;
}

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *ctx = user;
    if (ctx->failed)
        return 0;
    if (stages_section(section)) {
        if (stages_set(&ctx->cfg->stages, section, name, value, ctx->line, ctx->msg,
                       sizeof(ctx->msg)) != 0) {
            ctx->failed = 1;
            return 0;
        }
        return 1;
    }
    /* [tls.clients] adds scopes when a key comes again; elsewhere a key is set once. */
    bool once = !ctx->cont && strcmp(section, "tls.clients") != 0;
    if ((once && !first_setting(ctx, section, name)) ||
        config_set(ctx->cfg, section, name, value, ctx->msg, sizeof(ctx->msg)) != 0) {
        ctx->failed = 1;
        return 0; /* ini_parse then returns this line's number */
    }
    return 1;
}

int config_load_file(struct arca_config *cfg, const char *path, char *err, size_t errlen)
{
    int rc = ARCA_E_CONFIG;
    struct load_ctx *ctx = calloc(1, sizeof(*ctx));
    struct arca_config *work = malloc(sizeof(*work)); /* parse and validate all before applying */
    if (!ctx || !work) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    *work = *cfg;
    ctx->cfg = work;
    struct stat st;
    if (!(ctx->f = fopen(path, "r"))) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fileno(ctx->f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        fclose(ctx->f);
        goto out;
    }
    int line = ini_parse_stream(read_line, ctx, on_ini, ctx);
    fclose(ctx->f);
    if (line != 0) {
        snprintf(err, errlen, "%s:%d: %s", path, line, ctx->failed ? ctx->msg : "syntax error");
        goto out;
    }
    if (stages_finish(&work->stages, ctx->msg, sizeof(ctx->msg)) != 0 ||
        config_validate(work, ctx->msg, sizeof(ctx->msg)) != 0) {
        snprintf(err, errlen, "%s: %s", path, ctx->msg);
        goto out;
    }
    snprintf(work->config_file, sizeof(work->config_file), "%s", path);
    *cfg = *work;
    rc = 0;
out:
    free(work);
    if (ctx)
        free(ctx->seen);
    free(ctx);
    return rc;
}

/* ---- client certificates: [tls] client_ca_file / client_auth, [tls.clients] ---- */

/*
 * A subject CN usable as a key: the characters auth_name_ok (auth/) allows in
 * token names, since the CN becomes the actor "cert:CN" of audit events.
 */
static bool client_name_ok(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= 64 && isalnum((unsigned char)s[0]) &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@+-") == n;
}

int config_tls_client_set(struct arca_config *cfg, const char *key, const char *scopes, char *err,
                          size_t errlen)
{
    char norm[CONFIG_TLS_CLIENT_KEY_MAX + 1];
    size_t klen = strlen(key);
    if (strncasecmp(key, "sha256/", 7) == 0) {
        if (klen != 7 + 64 || strspn(key + 7, "0123456789abcdefABCDEF") != 64) {
            snprintf(err, errlen,
                     "tls.clients.%.80s: a fingerprint is sha256/ and 64 hex digits (no ':')",
                     key);
            return ARCA_E_CONFIG;
        }
        memcpy(norm, "sha256/", 7);
        for (size_t i = 7; i <= klen; i++)
            norm[i] = (char)tolower((unsigned char)key[i]);
    } else if (strcasecmp(key, "sha256") == 0) {
        /* "sha256:AB... = x" arrives as key "sha256": inih splits a line at ':' as at '='. */
        snprintf(err, errlen, "tls.clients.%s: write a fingerprint as sha256/ and 64 hex digits, "
                              "without ':'", key);
        return ARCA_E_CONFIG;
    } else if (client_name_ok(key)) {
        memcpy(norm, key, klen + 1);
    } else {
        snprintf(err, errlen,
                 "tls.clients.%.80s: a client is a certificate's subject CN (1-64 characters of "
                 "A-Z a-z 0-9 . _ @ + -, starting with a letter or digit) or sha256/ and the "
                 "64 hex digits of its fingerprint",
                 key);
        return ARCA_E_CONFIG;
    }
    size_t vlen = strlen(scopes);
    if (vlen == 0) {
        snprintf(err, errlen, "tls.clients.%s: give at least one scope (e.g. replicate)", norm);
        return ARCA_E_CONFIG;
    }
    /* A key given again, or a continuation line (inih passes it as the same key), adds scopes. */
    struct config_tls_client *e = NULL;
    for (size_t i = 0; i < cfg->ntls_clients && !e; i++)
        if (strcasecmp(cfg->tls_clients[i].key, norm) == 0)
            e = &cfg->tls_clients[i];
    if (!e) {
        if (cfg->ntls_clients == CONFIG_TLS_CLIENTS_MAX) {
            snprintf(err, errlen, "tls.clients.%s: at most %d clients", norm,
                     CONFIG_TLS_CLIENTS_MAX);
            return ARCA_E_CONFIG;
        }
        e = &cfg->tls_clients[cfg->ntls_clients];
        memset(e, 0, sizeof(*e));
        memcpy(e->key, norm, strlen(norm) + 1);
    }
    size_t have = strlen(e->scopes);
    if (have + (have ? 2 : 0) + vlen > CONFIG_TLS_CLIENT_SCOPES_MAX) {
        snprintf(err, errlen, "tls.clients.%s: the scope list is longer than %d characters", norm,
                 CONFIG_TLS_CLIENT_SCOPES_MAX);
        return ARCA_E_CONFIG;
    }
    snprintf(e->scopes + have, sizeof(e->scopes) - have, "%s%s", have ? ", " : "", scopes);
    if (e == &cfg->tls_clients[cfg->ntls_clients])
        cfg->ntls_clients++;
    return 0;
}

/* ---- replication peers: [peer.NAME] ---- */

static bool peer_name_ok(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= CONFIG_PEER_NAME_MAX &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == n;
}

int config_peer_set(struct arca_config *cfg, const char *name, const char *key, const char *value,
                    char *err, size_t errlen)
{
    static const struct {
        const char *key;
        size_t off, size;
    } keys[] = {
        {"url", offsetof(struct config_peer, url), sizeof(((struct config_peer *)0)->url)},
        {"token", offsetof(struct config_peer, token), sizeof(((struct config_peer *)0)->token)},
        {"token_file", offsetof(struct config_peer, token_file),
         sizeof(((struct config_peer *)0)->token_file)},
        {"ca_file", offsetof(struct config_peer, ca_file),
         sizeof(((struct config_peer *)0)->ca_file)},
        {"cert_file", offsetof(struct config_peer, cert_file),
         sizeof(((struct config_peer *)0)->cert_file)},
        {"key_file", offsetof(struct config_peer, key_file),
         sizeof(((struct config_peer *)0)->key_file)},
    };
    if (!peer_name_ok(name)) {
        snprintf(err, errlen, "[peer.%.80s]: a peer name is 1-%d letters, digits, '-' or '_'",
                 name, CONFIG_PEER_NAME_MAX);
        return ARCA_E_CONFIG;
    }
    size_t k = 0;
    while (k < sizeof(keys) / sizeof(keys[0]) && strcmp(keys[k].key, key) != 0)
        k++;
    if (k == sizeof(keys) / sizeof(keys[0])) {
        snprintf(err, errlen, "unknown key '%.80s' in section [peer.%s] (url, token, token_file, "
                              "ca_file, cert_file, key_file)", key, name);
        return ARCA_E_CONFIG;
    }
    struct config_peer *p = NULL;
    for (size_t i = 0; i < cfg->npeers && !p; i++)
        if (strcmp(cfg->peers[i].name, name) == 0)
            p = &cfg->peers[i];
    if (!p) {
        if (cfg->npeers == CONFIG_PEERS_MAX) {
            snprintf(err, errlen, "[peer.%s]: at most %d peers", name, CONFIG_PEERS_MAX);
            return ARCA_E_CONFIG;
        }
        p = &cfg->peers[cfg->npeers++];
        memset(p, 0, sizeof(*p));
        snprintf(p->name, sizeof(p->name), "%s", name);
    }
    if (strlen(value) >= keys[k].size) {
        snprintf(err, errlen, "peer.%s.%s: value longer than %zu bytes", name, key,
                 keys[k].size - 1);
        return ARCA_E_CONFIG;
    }
    memcpy((char *)p + keys[k].off, value, strlen(value) + 1);
    return 0;
}

static int validate_peers(const struct arca_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->npeers; i++) {
        const struct config_peer *p = &cfg->peers[i];
        const char *u = p->url;
        bool tls = strncmp(u, "https://", 8) == 0;
        const char *host = tls ? u + 8 : strncmp(u, "http://", 7) == 0 ? u + 7 : NULL;
        if (!host || !*host || strpbrk(host, "/?# \t") || !strchr(host, ':')) {
            snprintf(err, errlen, "peer.%s.url: expected http://HOST:PORT or https://HOST:PORT "
                                  "(no path), got '%s'", p->name, u);
            return ARCA_E_CONFIG;
        }
        if (p->token[0] && p->token_file[0]) {
            snprintf(err, errlen, "peer.%s: give token or token_file, not both", p->name);
            return ARCA_E_CONFIG;
        }
        if (!!p->cert_file[0] != !!p->key_file[0]) {
            snprintf(err, errlen, "peer.%s: cert_file and key_file go together", p->name);
            return ARCA_E_CONFIG;
        }
        if (!p->token[0] && !p->token_file[0] && !p->cert_file[0]) {
            snprintf(err, errlen, "peer.%s: give a credential with the replicate scope (token, "
                                  "token_file, or cert_file + key_file)", p->name);
            return ARCA_E_CONFIG;
        }
        if (!tls && (p->cert_file[0] || p->ca_file[0])) {
            snprintf(err, errlen, "peer.%s: ca_file and cert_file need an https:// url", p->name);
            return ARCA_E_CONFIG;
        }
    }
    return 0;
}

/* The [tls] client-certificate settings, each other and tls.listen. */
static int validate_client_auth(const struct arca_config *cfg, char *err, size_t errlen)
{
    const char *mode = cfg->tls_client_auth;
    bool off = strcmp(mode, "off") == 0;
    if (!off && strcmp(mode, "optional") != 0 && strcmp(mode, "required") != 0) {
        snprintf(err, errlen, "tls.client_auth: expected off, optional or required, got '%s'",
                 mode);
        return ARCA_E_CONFIG;
    }
    if (!off && !cfg->tls_listen[0]) {
        snprintf(err, errlen, "tls.client_auth = %s needs tls.listen (client certificates are "
                              "asked for on the HTTPS listener)", mode);
        return ARCA_E_CONFIG;
    }
    if (!off && !cfg->tls_client_ca_file[0]) {
        snprintf(err, errlen, "tls.client_auth = %s needs tls.client_ca_file (the CA "
                              "certificates that issue client certificates)", mode);
        return ARCA_E_CONFIG;
    }
    /* Settings that would silently do nothing are refused: "I thought mTLS was on". */
    if (off && cfg->tls_client_ca_file[0]) {
        snprintf(err, errlen, "tls.client_ca_file is set but tls.client_auth is off: set "
                              "client_auth = optional or required, or remove client_ca_file");
        return ARCA_E_CONFIG;
    }
    if (off && cfg->ntls_clients > 0) {
        snprintf(err, errlen, "[tls.clients] maps client certificates (%s, ...) but "
                              "tls.client_auth is off", cfg->tls_clients[0].key);
        return ARCA_E_CONFIG;
    }
    return 0;
}

bool config_listen_ok(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon)
        return false;
    const char *p = colon + 1;
    size_t n = strlen(p);
    return n >= 1 && n <= 5 && strspn(p, "0123456789") == n && atol(p) <= 65535;
}

int config_validate(const struct arca_config *cfg, char *err, size_t errlen)
{
    if (log_level_parse(cfg->log_level) < 0) {
        snprintf(err, errlen, "log.level: expected error, warn, info or debug, got '%s'",
                 cfg->log_level);
        return ARCA_E_CONFIG;
    }
    bool plain = strcmp(cfg->listen, "off") != 0;
    if (plain && !config_listen_ok(cfg->listen)) {
        snprintf(err, errlen, "server.listen: expected HOST:PORT (port 0-65535) or off, got '%s'",
                 cfg->listen);
        return ARCA_E_CONFIG;
    }
    if (cfg->tls_listen[0] && !config_listen_ok(cfg->tls_listen)) {
        snprintf(err, errlen, "tls.listen: expected HOST:PORT (port 0-65535), got '%s'",
                 cfg->tls_listen);
        return ARCA_E_CONFIG;
    }
    if (cfg->tls_listen[0] && (!cfg->tls_cert_file[0] || !cfg->tls_key_file[0])) {
        snprintf(err, errlen, "tls.listen needs tls.cert_file and tls.key_file");
        return ARCA_E_CONFIG;
    }
    if (!plain && !cfg->tls_listen[0]) {
        snprintf(err, errlen, "server.listen is off and tls.listen is empty: nothing to listen on");
        return ARCA_E_CONFIG;
    }
    if (cfg->data_dir[0] == '\0') {
        snprintf(err, errlen, "storage.data_dir must not be empty");
        return ARCA_E_CONFIG;
    }
    if (cfg->centre_id[0] == '\0' || strspn(cfg->centre_id, "abcdefghijklmnopqrstuvwxyz"
                                                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                            "0123456789-_") != strlen(cfg->centre_id)) {
        snprintf(err, errlen, "centre.id: use letters, digits, '-' and '_' only, got '%s'",
                 cfg->centre_id);
        return ARCA_E_CONFIG;
    }
    if (validate_client_auth(cfg, err, errlen) != 0 || validate_peers(cfg, err, errlen) != 0)
        return ARCA_E_CONFIG;
    return 0;
}

static const char *const gate_ops[] = {
    [GATE_PROPERTY_EQ] = "require_property", [GATE_PROPERTY_MATCH] = "require_property",
    [GATE_FILE] = "require_file", [GATE_BUILD] = "require_build"};

void config_dump(const struct arca_config *cfg, FILE *out)
{
    const struct stage_policy *p = &cfg->stages;
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct setting *s = &settings[i];
        const char *field = (const char *)cfg + s->offset;
        fprintf(out, "%s.%s = ", s->section, s->key);
        switch (s->type) {
        case T_STR: fprintf(out, "%s\n", field); break;
        case T_BOOL: fprintf(out, "%s\n", *(const bool *)field ? "true" : "false"); break;
        default: fprintf(out, "%llu\n", (unsigned long long)*(const uint64_t *)field); break;
        }
    }
    fprintf(out, "stages.order = ");
    for (size_t i = 0; i < p->n; i++)
        fprintf(out, "%s%s", i ? ", " : "", p->stages[i].name);
    fprintf(out, "\nstages.allow_skip = %s\n", p->allow_skip ? "true" : "false");
    for (size_t i = 0; i < p->n; i++) {
        for (size_t j = 0; j < p->stages[i].nrules; j++) {
            const struct gate_rule *r = &p->stages[i].rules[j];
            fprintf(out, "gate.%s.%s = ", p->stages[i].name, gate_ops[r->kind]);
            switch (r->kind) {
            case GATE_PROPERTY_EQ: fprintf(out, "%s == %s\n", r->key, r->value); break;
            case GATE_PROPERTY_MATCH: fprintf(out, "%s ~ %s\n", r->key, r->value); break;
            case GATE_FILE: fprintf(out, "%s\n", r->key); break;
            case GATE_BUILD: fprintf(out, "true\n"); break;
            }
        }
    }
    for (size_t i = 0; i < cfg->ntls_clients; i++)
        fprintf(out, "tls.clients.%s = %s\n", cfg->tls_clients[i].key, cfg->tls_clients[i].scopes);
    for (size_t i = 0; i < cfg->npeers; i++) {
        const struct config_peer *pe = &cfg->peers[i];
        fprintf(out, "peer.%s.url = %s\n", pe->name, pe->url);
        fprintf(out, "peer.%s.token = %s\n", pe->name, pe->token[0] ? "(set)" : "");
        fprintf(out, "peer.%s.token_file = %s\n", pe->name, pe->token_file);
        fprintf(out, "peer.%s.ca_file = %s\n", pe->name, pe->ca_file);
        fprintf(out, "peer.%s.cert_file = %s\n", pe->name, pe->cert_file);
        fprintf(out, "peer.%s.key_file = %s\n", pe->name, pe->key_file);
    }
}
