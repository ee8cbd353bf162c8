/* Unit tests for common/config.c: defaults, every error class, line numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "arca_err.h"
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *write_conf(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/arca-test-conf-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_defaults(void **state)
{
    struct arca_config c;
    char err[256];
    config_init_defaults(&c);
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_string_equal(c.data_dir, "./arca-data");
    assert_int_equal(c.max_header_bytes, 16384);
    assert_int_equal(c.max_upload_bytes, 64ull << 30);
    assert_true(c.verify_on_download);
    assert_int_equal(c.file_cache, 8u << 20);
    assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
}

static void test_load_good(void **state)
{
    struct arca_config c;
    char err[256];
    config_init_defaults(&c);
    char *p = write_conf("; comment\n[server]\nlisten = 127.0.0.1:0\nmax_upload_bytes = 1M\n"
                         "access_log = off\n[centre]\nid = eu-west_1\n");
    assert_int_equal(config_load_file(&c, p, err, sizeof(err)), 0);
    assert_string_equal(c.listen, "127.0.0.1:0");
    assert_int_equal(c.max_upload_bytes, 1 << 20);
    assert_false(c.access_log);
    assert_string_equal(c.centre_id, "eu-west_1");
    unlink(p);
}

static void expect_error(const char *text, const char *needle)
{
    struct arca_config c, before;
    char err[256] = "";
    config_init_defaults(&c);
    before = c;
    char *p = write_conf(text);
    assert_int_equal(config_load_file(&c, p, err, sizeof(err)), ARCA_E_CONFIG);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
    /* Nothing is applied from a file that fails. */
    assert_memory_equal(&c, &before, sizeof(c));
    unlink(p);
}

static void test_errors_name_the_line(void **state)
{
    expect_error("[server]\nlisten = 1.2.3.4:5\nbogus = 1\n", ":3: unknown key 'bogus'");
    expect_error("[nowhere]\nx = 1\n", ":2: unknown section [nowhere]");
    expect_error("[server]\nworkers = many\n", ":2: server.workers: expected a whole number");
    expect_error("[server]\nworkers = 65\n", ":2: server.workers: 65 is outside 0..64");
    expect_error("[server]\nmax_header_bytes = 12X\n", ":2: server.max_header_bytes");
    expect_error("[server]\naccess_log = maybe\n", ":2: server.access_log: expected true or false");
    expect_error("[storage]\nfile_cache = 2G\n", ":2: storage.file_cache");
    expect_error("[storage]\nfile_cache = -1\n", ":2: storage.file_cache");
    expect_error("[log]\nlevel = loud\n", "log.level");
    expect_error("[centre]\nid = a b\n", "centre.id");
    expect_error("[server]\nlisten = nocolon\n", "server.listen");
    expect_error("this is not ini\n", ":1:");
}

static void test_stages_default_and_gates(void **state)
{
    struct arca_config c;
    char err[256];
    config_init_defaults(&c);
    assert_int_equal(c.stages.n, 3);
    assert_string_equal(c.stages.stages[0].name, "dev");
    assert_string_equal(c.stages.stages[2].name, "prod");
    assert_false(c.stages.allow_skip);
    assert_int_equal(stages_rank(&c.stages, "test"), 1);
    assert_int_equal(stages_rank(&c.stages, "qa"), -1);
    /* Gates may come before the order that names their stage. */
    char *p = write_conf("[gate.prod]\nrequire_property = tests.passed == true\n"
                         "require_property = change.ticket ~ CHG-[0-9]+\n"
                         "require_file = reports/junit.xml\nrequire_build = true\n"
                         "[stages]\norder = build, qa , prod\nallow_skip = true\n"
                         "[gate.qa]\nrequire_build = false\n");
    assert_int_equal(config_load_file(&c, p, err, sizeof(err)), 0);
    unlink(p);
    assert_int_equal(c.stages.n, 3);
    assert_string_equal(c.stages.stages[1].name, "qa");
    assert_true(c.stages.allow_skip);
    assert_int_equal(c.stages.stages[1].nrules, 0);
    const struct stage_def *prod = &c.stages.stages[2];
    assert_int_equal(prod->nrules, 4);
    assert_int_equal(prod->rules[0].kind, GATE_PROPERTY_EQ);
    assert_string_equal(prod->rules[0].key, "tests.passed");
    assert_string_equal(prod->rules[0].value, "true");
    assert_int_equal(prod->rules[0].line, 2);
    assert_int_equal(prod->rules[1].kind, GATE_PROPERTY_MATCH);
    assert_string_equal(prod->rules[1].value, "CHG-[0-9]+");
    assert_int_equal(prod->rules[2].kind, GATE_FILE);
    assert_string_equal(prod->rules[2].key, "reports/junit.xml");
    assert_int_equal(prod->rules[3].kind, GATE_BUILD);
    assert_int_equal(prod->rules[3].line, 5);
}

static void test_stage_errors_name_the_line(void **state)
{
    expect_error("[stages]\norder = dev\n", ":2: stages.order: list at least two");
    expect_error("[stages]\norder = dev, dev\n", ":2: stages.order: 'dev' is listed twice");
    expect_error("[stages]\norder = dev, t/x\n", ":2: stages.order: 't/x'");
    expect_error("[stages]\nallow_skip = perhaps\n", ":2: stages.allow_skip");
    expect_error("[stages]\nspeed = 1\n", ":2: unknown key 'speed' in section [stages]");
    expect_error("\n[gate.prod]\nrequire_property = tests.passed\n", ":3: require_property: "
                 "expected 'KEY == VALUE'");
    expect_error("[gate.prod]\nrequire_property = a ~ (unclosed\n", ":2: require_property: bad "
                 "pattern '(unclosed'");
    expect_error("[gate.prod]\nrequire_property = bad key == 1\n", ":2: require_property: 'bad "
                 "key'");
    expect_error("[gate.prod]\nrequire_file = ../etc/passwd\n", ":2: require_file");
    expect_error("[gate.prod]\nrequire_build = sometimes\n", ":2: require_build");
    expect_error("[gate.prod]\nrequire_tests = all\n", ":2: unknown key 'require_tests'");
    expect_error("[stages]\norder = a, b\n[gate.prod]\nrequire_build = true\n",
                 "line 4: [gate.prod] names no stage");
    expect_error("\n\n[gate.dev]\nrequire_build = true\n", "line 4: [gate.dev]: 'dev' is the "
                 "first stage");
}

static const char tls_base[] = "[tls]\nlisten = 127.0.0.1:0\ncert_file = c.pem\nkey_file = k.pem\n";

static void test_tls_clients(void **state)
{
    struct arca_config c;
    char err[256], text[2048];
    config_init_defaults(&c);
    assert_string_equal(c.tls_client_auth, "off");
    assert_string_equal(c.tls_client_ca_file, "");
    assert_int_equal(c.ntls_clients, 0);
    snprintf(text, sizeof(text),
             "%sclient_ca_file = ca.pem\nclient_auth = required\n"
             "[tls.clients]\n"
             "replica.dc2 = replicate\n"
             "ci-runner = read@libs-*, write@libs-*\n"
             "    read@docs\n"                       /* a continuation line adds scopes */
             "CI-RUNNER = delete@libs-tmp\n"          /* so does the key again, any case */
             "sha256/00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff = admin\n",
             tls_base);
    char *p = write_conf(text);
    assert_int_equal(config_load_file(&c, p, err, sizeof(err)), 0);
    assert_string_equal(c.tls_client_auth, "required");
    assert_string_equal(c.tls_client_ca_file, "ca.pem");
    assert_string_equal(c.config_file, p);
    assert_int_equal(c.ntls_clients, 3);
    assert_string_equal(c.tls_clients[0].key, "replica.dc2");
    assert_string_equal(c.tls_clients[0].scopes, "replicate");
    assert_string_equal(c.tls_clients[1].key, "ci-runner");
    assert_string_equal(c.tls_clients[1].scopes,
                        "read@libs-*, write@libs-*, read@docs, delete@libs-tmp");
    /* Fingerprints are kept lower-case. */
    assert_string_equal(c.tls_clients[2].key, "sha256/00112233445566778899aabbccddeeff"
                                              "00112233445566778899aabbccddeeff");
    unlink(p);

    /* `arcad config` shows the entries. */
    char *dump = NULL;
    size_t dlen = 0;
    FILE *out = open_memstream(&dump, &dlen);
    config_dump(&c, out);
    fclose(out);
    assert_non_null(strstr(dump, "tls.client_auth = required\n"));
    assert_non_null(strstr(dump, "tls.clients.replica.dc2 = replicate\n"));
    free(dump);
}

static void test_tls_client_errors(void **state)
{
    char text[1024];
    snprintf(text, sizeof(text), "%sclient_auth = sometimes\nclient_ca_file = ca.pem\n", tls_base);
    expect_error(text, "tls.client_auth: expected off, optional or required, got 'sometimes'");
    snprintf(text, sizeof(text), "%sclient_auth = optional\n", tls_base);
    expect_error(text, "tls.client_auth = optional needs tls.client_ca_file");
    expect_error("[tls]\nclient_auth = required\nclient_ca_file = ca.pem\n",
                 "tls.client_auth = required needs tls.listen");
    snprintf(text, sizeof(text), "%sclient_ca_file = ca.pem\n", tls_base);
    expect_error(text, "tls.client_ca_file is set but tls.client_auth is off");
    snprintf(text, sizeof(text), "%s[tls.clients]\nci = read\n", tls_base);
    expect_error(text, "[tls.clients] maps client certificates (ci, ...) but tls.client_auth is off");
    /* Entry syntax errors name the line and the entry. */
    expect_error("[tls.clients]\nci runner = read\n", ":2: tls.clients.ci runner: a client is");
    expect_error("[tls.clients]\nsha256:00 = read\n", ":2: tls.clients.sha256: write a fingerprint");
    expect_error("[tls.clients]\nsha256/0011 = read\n", ":2: tls.clients.sha256/0011: a fingerprint");
    expect_error("[tls.clients]\nci =\n", ":2: tls.clients.ci: give at least one scope");
    /* At most CONFIG_TLS_CLIENTS_MAX clients. */
    char many[8192];
    size_t n = (size_t)snprintf(many, sizeof(many), "[tls.clients]\n");
    for (int i = 0; i <= CONFIG_TLS_CLIENTS_MAX; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "c%d = read\n", i);
    expect_error(many, "at most 64 clients");
}

static void test_peers(void **state)
{
    (void)state;
    struct arca_config c;
    char err[256] = "";
    config_init_defaults(&c);
    assert_int_equal(c.npeers, 0);
    assert_int_equal(c.repl_poll_ms, 200);
    assert_int_equal(c.repl_batch, 500);
    assert_int_equal(c.repl_parallel_fetches, 4);
    char *p = write_conf("[replication]\npoll_interval_ms = 50\nbatch = 100\n"
                         "[peer.dc2]\nurl = http://10.0.0.2:8080\ntoken = arca_x\n"
                         "[peer.dc-3]\nurl = https://dc3.example.com:8443\n"
                         "token_file = /etc/arca/dc3.token\nca_file = /etc/arca/ca.pem\n"
                         "cert_file = c.pem\nkey_file = k.pem\n");
    assert_int_equal(config_load_file(&c, p, err, sizeof(err)), 0);
    unlink(p);
    assert_int_equal(c.repl_poll_ms, 50);
    assert_int_equal(c.repl_batch, 100);
    assert_int_equal(c.npeers, 2);
    assert_string_equal(c.peers[0].name, "dc2");
    assert_string_equal(c.peers[0].url, "http://10.0.0.2:8080");
    assert_string_equal(c.peers[0].token, "arca_x");
    assert_string_equal(c.peers[1].name, "dc-3");
    assert_string_equal(c.peers[1].token_file, "/etc/arca/dc3.token");
    assert_string_equal(c.peers[1].key_file, "k.pem");
    /* The dump names the token as set, never its value. */
    char *dump = NULL;
    size_t dlen = 0;
    FILE *f = open_memstream(&dump, &dlen);
    config_dump(&c, f);
    fclose(f);
    assert_non_null(strstr(dump, "peer.dc2.token = (set)\n"));
    assert_null(strstr(dump, "arca_x"));
    free(dump);
}

static void test_peer_errors(void **state)
{
    (void)state;
    expect_error("[peer.dc2]\ntoken = t\n", "peer.dc2.url: expected http://HOST:PORT");
    expect_error("[peer.dc2]\nurl = ftp://a:1\ntoken = t\n", "peer.dc2.url: expected");
    expect_error("[peer.dc2]\nurl = http://a:1/path\ntoken = t\n", "(no path)");
    expect_error("[peer.dc2]\nurl = http://a\ntoken = t\n", "peer.dc2.url");
    expect_error("[peer.dc2]\nurl = http://a:1\n", "peer.dc2: give a credential");
    expect_error("[peer.dc2]\nurl = http://a:1\ntoken = t\ntoken_file = f\n",
                 "give token or token_file, not both");
    expect_error("[peer.dc2]\nurl = https://a:1\ncert_file = c\n",
                 "cert_file and key_file go together");
    expect_error("[peer.dc2]\nurl = http://a:1\ntoken = t\nca_file = ca.pem\n",
                 "need an https:// url");
    expect_error("[peer.dc 2]\nurl = http://a:1\n", ":2: [peer.dc 2]: a peer name is");
    expect_error("[peer.dc2]\nuri = http://a:1\n", ":2: unknown key 'uri' in section [peer.dc2]");
    expect_error("[replication]\nbatch = 0\n", ":2: replication.batch");
    expect_error("[replication]\nparallel_fetches = 17\n", ":2: replication.parallel_fetches");
    char many[4096];
    size_t n = 0;
    for (int i = 0; i <= CONFIG_PEERS_MAX; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "[peer.p%d]\nurl = http://a:1\n", i);
    expect_error(many, "at most 16 peers");
}

static void test_missing_file(void **state)
{
    struct arca_config c;
    char err[256];
    config_init_defaults(&c);
    assert_int_equal(config_load_file(&c, "/nonexistent/arca.conf", err, sizeof(err)),
                     ARCA_E_CONFIG);
    assert_non_null(strstr(err, "cannot open"));
    assert_non_null(strstr(err, "No such file"));
    /* A directory is not a config file (fopen succeeds on one, and it reads as empty). */
    struct arca_config before = c;
    assert_int_equal(config_load_file(&c, "/tmp", err, sizeof(err)), ARCA_E_CONFIG);
    assert_non_null(strstr(err, "not a regular file"));
    assert_memory_equal(&c, &before, sizeof(c));
}

static void test_listen_port_range(void **state)
{
    for (int i = 0; i < 4; i++) {
        static const char *const bad[] = {"127.0.0.1:99999", "127.0.0.1:65536", "127.0.0.1:",
                                          "127.0.0.1:80x"};
        char text[128];
        snprintf(text, sizeof(text), "[server]\nlisten = %s\n", bad[i]);
        expect_error(text, "server.listen: expected HOST:PORT (port 0-65535)");
    }
    struct arca_config c;
    char err[256];
    config_init_defaults(&c);
    char *p = write_conf("[server]\nlisten = 127.0.0.1:65535\n");
    assert_int_equal(config_load_file(&c, p, err, sizeof(err)), 0);
    unlink(p);
}

static void test_setting_twice(void **state)
{
    expect_error("[server]\nworkers = 2\nworkers = 3\n", ":3: 'workers' in section "
                 "[server] is set twice");
    expect_error("[server]\nworkers = 2\n[storage]\nfile_cache = 1M\n[server]\nworkers = 3\n",
                 ":6: 'workers' in section [server] is set twice");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_load_good),
        cmocka_unit_test(test_errors_name_the_line),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_setting_twice),
        cmocka_unit_test(test_listen_port_range),
        cmocka_unit_test(test_stages_default_and_gates),
        cmocka_unit_test(test_stage_errors_name_the_line),
        cmocka_unit_test(test_tls_clients),
        cmocka_unit_test(test_tls_client_errors),
        cmocka_unit_test(test_peers),
        cmocka_unit_test(test_peer_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
