/*
 * arcad: the arca server and its maintenance commands.
 *
 *   arcad [serve] [--listen HOST:PORT] [--data DIR] [--config FILE] [--log-level L]
 *   arcad verify  [--data DIR] [--config FILE]
 *   arcad audit verify [--checkpoint FILE] [--data DIR] [--config FILE]
 *   arcad replication verify [--peer NAME] [--json] [--data DIR] [--config FILE]
 *   arcad config  [--config FILE] [...]
 *
 * Settings come from the embedded defaults, then the config file, then flags.
 */
#include "arca_err.h"
#include "auth.h"
#include "blob.h"
#include "config.h"
#include "log.h"
#include "repo.h"
#include "server_int.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARCA_VERSION "0.1.0"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: arcad [serve] [options]      run the server\n"
            "       arcad verify [options]       re-check every stored blob against its checksums\n"
            "       arcad config [options]       print the effective settings\n"
            "       arcad audit verify [--checkpoint FILE] [options]\n"
            "                                    re-derive the audit log from the stored events;\n"
            "                                    exit 1 naming the first altered, removed or\n"
            "                                    reordered event (works beside a running server)\n"
            "       arcad replication verify [--peer NAME] [--json] [options]\n"
            "                                    compare the replicated state with each peer's\n"
            "                                    (or NAME's) through the running servers; list\n"
            "                                    every divergent key; exit 1 when they diverge\n"
            "       arcad token create --name NAME [--owner OWNER] [--scope SCOPE]...\n"
            "                          [--expires-in SECONDS] [options]\n"
            "       arcad token list [options]\n"
            "       arcad token revoke ID [options]\n"
            "                                    manage API tokens in the index directly\n"
            "                                    (first set-up, recovery; stop arcad first)\n"
            "options:\n"
            "  --listen HOST:PORT   listen address (default 127.0.0.1:8080; port 0 = any free)\n"
            "  --data DIR           data directory (default ./arca-data)\n"
            "  --config FILE        INI config file (see conf/arca.conf)\n"
            "  --log-level LEVEL    error, warn, info or debug\n"
            "  --version, --help\n");
}

struct verify_counts {
    blob_store *bs;
    uint64_t checked, ok, missing, corrupt, errors;
};

static int verify_one(void *arg, const struct blob_digests *dig, const struct blob_blocks *blocks)
{
    struct verify_counts *vc = arg;
    char hex[65];
    hex_encode(dig->sha256, 32, hex);
    vc->checked++;
    char why[160];
    int rc = blob_verify_why(vc->bs, dig, blocks, why, sizeof(why));
    if (rc == 0) {
        vc->ok++;
        return 0;
    }
    const char *what = rc == -ENOENT ? "missing" : rc == ARCA_E_CORRUPT ? "corrupt" : "error";
    if (rc == -ENOENT)
        vc->missing++;
    else if (rc == ARCA_E_CORRUPT)
        vc->corrupt++;
    else
        vc->errors++;
    printf("{\"sha256\":\"%s\",\"size\":%llu,\"problem\":\"%s\",\"detail\":\"%s\"}\n", hex,
           (unsigned long long)dig->size, what, why[0] ? why : arca_strerror(rc));
    fflush(stdout);
    return 0;
}

static int cmd_verify(const struct arca_config *cfg)
{
    char path[PATH_MAX];
    repo_db *db = NULL;
    struct verify_counts vc = {0};
    int rc;
    snprintf(path, sizeof(path), "%s/blobs", cfg->data_dir);
    if ((rc = blob_store_open_readonly(path, &vc.bs)) != 0) {
        fprintf(stderr, "arcad verify: cannot open %s: %s\n", path, arca_strerror(rc));
        return 2;
    }
    snprintf(path, sizeof(path), "%s/index", cfg->data_dir);
    if ((rc = repo_db_open_readonly(path, &db)) != 0) {
        fprintf(stderr, "arcad verify: cannot open the index %s: %s\n", path, arca_strerror(rc));
        blob_store_free(vc.bs);
        return 2;
    }
    rc = repo_walk_blobs(db, verify_one, &vc);
    printf("{\"checked\":%llu,\"ok\":%llu,\"missing\":%llu,\"corrupt\":%llu,\"errors\":%llu}\n",
           (unsigned long long)vc.checked, (unsigned long long)vc.ok,
           (unsigned long long)vc.missing, (unsigned long long)vc.corrupt,
           (unsigned long long)vc.errors);
    repo_db_free(db);
    blob_store_free(vc.bs);
    if (rc != 0) {
        fprintf(stderr, "arcad verify: walking the index failed: %s\n", arca_strerror(rc));
        return 2;
    }
    return vc.missing || vc.corrupt || vc.errors ? 1 : 0;
}

struct token_args {
    const char *sub;       /* create, list, revoke */
    const char *id;        /* revoke */
    const char *name, *owner, *expires_in;
    size_t nscopes;
    const char *scopes[TOKEN_SCOPES_MAX];
};

static void print_token(const struct token *t)
{
    printf("{\"id\":\"%s\",\"name\":\"%s\",\"owner\":\"%s\",\"scopes\":[", t->id, t->name,
           t->owner);
    for (size_t i = 0; i < t->nscopes; i++)
        printf("%s\"%s\"", i ? "," : "", t->scopes[i]);
    printf("],\"created_ms\":%llu,\"expires_ms\":%llu,\"revoked_ms\":%llu,\"last_used_ms\":%llu}\n",
           (unsigned long long)t->created_ms, (unsigned long long)t->expires_ms,
           (unsigned long long)t->revoked_ms, (unsigned long long)t->last_used_ms);
}

static int print_token_cb(void *arg, const struct token *t)
{
    print_token(t);
    return 0;
}

static int cmd_token(const struct arca_config *cfg, const struct token_args *ta)
{
    char path[PATH_MAX], next[REPO_CURSOR_MAX] = "";
    repo_db *db = NULL;
    struct actor_ctx who = {"cli", "local", NULL};
    int rc, status = 0;
    snprintf(path, sizeof(path), "%s/index", cfg->data_dir);
    if ((rc = repo_db_open(path, cfg->centre_id, &db)) != 0) {
        fprintf(stderr, "arcad token: cannot open the index %s: %s (is arcad running? stop it, "
                        "or use the /api/v1/tokens API)\n", path, arca_strerror(rc));
        return 2;
    }
    if (!strcmp(ta->sub, "create")) {
        struct token t;
        const char *why;
        char secret[AUTH_SECRET_LEN + 1];
        memset(&t, 0, sizeof(t));
        if (!ta->name || !auth_name_ok(ta->name) || (ta->owner && !auth_name_ok(ta->owner))) {
            fprintf(stderr, "arcad token create: --name (and --owner) must be 1-%d characters "
                            "of A-Z a-z 0-9 . _ @ + -, starting with a letter or digit\n",
                    TOKEN_NAME_MAX);
            status = 2;
            goto out;
        }
        snprintf(t.name, sizeof(t.name), "%s", ta->name);
        snprintf(t.owner, sizeof(t.owner), "%s", ta->owner ? ta->owner : "cli");
        for (size_t i = 0; i < ta->nscopes; i++) {
            struct scope sc;
            if (strlen(ta->scopes[i]) > TOKEN_SCOPE_MAX ||
                scope_parse(ta->scopes[i], &sc, &why) != 0) {
                fprintf(stderr, "arcad token create: scope '%s': %s\n", ta->scopes[i],
                        strlen(ta->scopes[i]) > TOKEN_SCOPE_MAX ? "too long" : why);
                status = 2;
                goto out;
            }
            snprintf(t.scopes[t.nscopes++], TOKEN_SCOPE_MAX + 1, "%s", ta->scopes[i]);
        }
        if (t.nscopes == 0) {
            fprintf(stderr, "arcad token create: give at least one --scope (e.g. write@libs)\n");
            status = 2;
            goto out;
        }
        if (ta->expires_in) {
            char *end;
            unsigned long long secs = strtoull(ta->expires_in, &end, 10);
            if (*end || secs == 0 || ta->expires_in[0] == '-') {
                fprintf(stderr, "arcad token create: --expires-in takes seconds > 0\n");
                status = 2;
                goto out;
            }
            t.expires_ms = time_now_ms() + secs * 1000;
        }
        if ((rc = auth_token_issue_db(db, &t, &who, secret)) != 0) {
            fprintf(stderr, "arcad token create: %s\n", arca_strerror(rc));
            status = 1;
            goto out;
        }
        printf("%s\n", secret); /* shown once: the only place the secret ever appears */
        print_token(&t);
    } else if (!strcmp(ta->sub, "list")) {
        do {
            char after[REPO_CURSOR_MAX];
            snprintf(after, sizeof(after), "%s", next);
            if ((rc = repo_token_list(db, after, 1000, print_token_cb, NULL, next)) != 0) {
                fprintf(stderr, "arcad token list: %s\n", arca_strerror(rc));
                status = 1;
                goto out;
            }
        } while (next[0]);
    } else if (!strcmp(ta->sub, "revoke")) {
        struct token t;
        if (!ta->id) {
            fprintf(stderr, "arcad token revoke: give the token id\n");
            status = 2;
            goto out;
        }
        rc = repo_token_revoke(db, ta->id, &who, &t);
        if (rc != 0) {
            fprintf(stderr, "arcad token revoke: %s: %s\n", ta->id, arca_strerror(rc));
            status = rc == ARCA_E_NOTFOUND ? 2 : 1;
            goto out;
        }
        print_token(&t);
    } else {
        fprintf(stderr, "arcad token: unknown subcommand '%s' (create, list, revoke)\n", ta->sub);
        status = 2;
    }
out:
    repo_db_free(db);
    return status;
}

int main(int argc, char **argv)
{
    struct token_args ta = {0};
    struct arca_config cfg;
    char err[512];
    const char *cmd = "serve";
    const char *config_file = NULL, *listen = NULL, *data = NULL, *level = NULL;
    const char *audit_sub = NULL, *checkpoint = NULL;
    const char *repl_sub = NULL, *repl_peer = NULL;
    bool repl_json = false;
    int i = 1;
    config_init_defaults(&cfg);
    if (i < argc && argv[i][0] != '-')
        cmd = argv[i++];
    if (!strcmp(cmd, "token")) {
        if (i >= argc || argv[i][0] == '-') {
            fprintf(stderr, "arcad token: give a subcommand: create, list, revoke\n");
            return 2;
        }
        ta.sub = argv[i++];
        if (!strcmp(ta.sub, "revoke") && i < argc && argv[i][0] != '-')
            ta.id = argv[i++];
    }
    if (!strcmp(cmd, "audit")) {
        if (i >= argc || argv[i][0] == '-') {
            fprintf(stderr, "arcad audit: give a subcommand: verify\n");
            return 2;
        }
        audit_sub = argv[i++];
    }
    if (!strcmp(cmd, "replication")) {
        if (i >= argc || argv[i][0] == '-') {
            fprintf(stderr, "arcad replication: give a subcommand: verify\n");
            return 2;
        }
        repl_sub = argv[i++];
    }
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char **target = NULL;
        if (!strcmp(cmd, "token") && i + 1 < argc) {
            if (!strcmp(a, "--name"))
                target = &ta.name;
            else if (!strcmp(a, "--owner"))
                target = &ta.owner;
            else if (!strcmp(a, "--expires-in"))
                target = &ta.expires_in;
            else if (!strcmp(a, "--scope")) {
                if (ta.nscopes == TOKEN_SCOPES_MAX) {
                    fprintf(stderr, "arcad: at most %d scopes\n", TOKEN_SCOPES_MAX);
                    return 2;
                }
                ta.scopes[ta.nscopes++] = argv[++i];
                continue;
            }
            if (target) {
                *target = argv[++i];
                continue;
            }
        }
        if (!strcmp(cmd, "audit") && !strcmp(a, "--checkpoint") && i + 1 < argc) {
            checkpoint = argv[++i];
            continue;
        }
        if (!strcmp(cmd, "replication") && !strcmp(a, "--peer") && i + 1 < argc) {
            repl_peer = argv[++i];
            continue;
        }
        if (!strcmp(cmd, "replication") && !strcmp(a, "--json")) {
            repl_json = true;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--version")) {
            printf("arcad %s\n", ARCA_VERSION);
            return 0;
        }
        if (!strcmp(a, "--config"))
            target = &config_file;
        else if (!strcmp(a, "--listen"))
            target = &listen;
        else if (!strcmp(a, "--data"))
            target = &data;
        else if (!strcmp(a, "--log-level"))
            target = &level;
        if (!target || i + 1 >= argc) {
            fprintf(stderr, "arcad: %s '%s'\n", target ? "missing value for" : "unknown option", a);
            usage(stderr);
            return 2;
        }
        *target = argv[++i];
    }
    if (config_file && config_load_file(&cfg, config_file, err, sizeof(err)) != 0) {
        fprintf(stderr, "arcad: %s\n", err);
        return 2;
    }
    if ((listen && config_set(&cfg, "server", "listen", listen, err, sizeof(err)) != 0) ||
        (data && config_set(&cfg, "storage", "data_dir", data, err, sizeof(err)) != 0) ||
        (level && config_set(&cfg, "log", "level", level, err, sizeof(err)) != 0) ||
        config_validate(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "arcad: %s\n", err);
        return 2;
    }
    log_set_level(log_level_parse(cfg.log_level));

    if (!strcmp(cmd, "config")) {
        config_dump(&cfg, stdout);
        return 0;
    }
    if (!strcmp(cmd, "verify"))
        return cmd_verify(&cfg);
    if (!strcmp(cmd, "token"))
        return cmd_token(&cfg, &ta);
    if (!strcmp(cmd, "audit"))
        return cli_audit(&cfg, audit_sub, checkpoint);
    if (!strcmp(cmd, "replication"))
        return cli_repl(&cfg, repl_sub, repl_peer, repl_json);
    if (strcmp(cmd, "serve") != 0) {
        fprintf(stderr, "arcad: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    LOG_I("arcad %s starting", ARCA_VERSION);
    int rc = server_run(&cfg);
    if (rc != 0) {
        LOG_E("arcad stopped with an error: %s", arca_strerror(rc));
        return 1;
    }
    LOG_I("arcad stopped");
    return 0;
}
