/*
 * arcad: the arca server and its maintenance commands.
 *
 *   arcad [serve] [--listen HOST:PORT] [--data DIR] [--config FILE] [--log-level L]
 *   arcad verify  [--data DIR] [--config FILE]
 *   arcad config  [--config FILE] [...]
 *
 * Settings come from the embedded defaults, then the config file, then flags.
 */
#include "arca_err.h"
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
    int rc = blob_verify(vc->bs, dig, blocks);
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
           (unsigned long long)dig->size, what, arca_strerror(rc));
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

int main(int argc, char **argv)
{
    struct arca_config cfg;
    char err[512];
    const char *cmd = "serve";
    const char *config_file = NULL, *listen = NULL, *data = NULL, *level = NULL;
    int i = 1;
    config_init_defaults(&cfg);
    if (i < argc && argv[i][0] != '-')
        cmd = argv[i++];
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char **target = NULL;
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
