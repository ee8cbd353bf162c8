/* Unit tests for auth/: scopes, bootstrap, authentication, the failure limiter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "arca_err.h"
#include "auth.h"
#include "util.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fx {
    char dir[64];
    char index[96];
    repo_db *db;
    auth *a;
    char admin[128];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/arca-test-auth-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->index, sizeof(f->index), "%s/index", f->dir);
    assert_int_equal(repo_db_open(f->index, "dc1", &f->db), 0);
    int created = 0;
    assert_int_equal(auth_open(f->dir, f->db, "pub-*, docs", &f->a, &created), 0);
    assert_int_equal(created, 1);
    char path[128], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/admin.token", f->dir);
    assert_int_equal(fs_read_small(path, 4096, &text, &len), 0);
    snprintf(f->admin, sizeof(f->admin), "Bearer %.*s", (int)(len - 1), text);
    free(text);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    auth_free(f->a);
    repo_db_free(f->db);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void test_scope_parse(void **state)
{
    struct scope s;
    const char *why;
    assert_int_equal(scope_parse("write@libs-*", &s, &why), 0);
    assert_string_equal(s.action, "write");
    assert_string_equal(s.repo_glob, "libs-*");
    assert_int_equal(scope_parse("promote:prod", &s, &why), 0);
    assert_string_equal(s.repo_glob, "*");
    assert_int_equal(scope_parse("admin", &s, &why), 0);
    const char *bad[] = {"", "@libs", "fly", "write@", "write@a b", "promote:", "promote:PROD",
                         "write@../x", "read@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (scope_parse(bad[i], &s, &why) != ARCA_E_INVALID)
            fail_msg("scope '%s' was accepted", bad[i]);
}

static void test_scope_allows(void **state)
{
    struct scope s;
    const char *why;
    scope_parse("write@libs-*", &s, &why);
    assert_true(scope_allows(&s, "write", "libs-core"));
    assert_false(scope_allows(&s, "write", "apps"));
    assert_false(scope_allows(&s, "read", "libs-core"));
    scope_parse("admin", &s, &why);
    assert_true(scope_allows(&s, "promote:prod", "anything"));
    assert_true(scope_allows(&s, "admin", NULL));
    scope_parse("read", &s, &why);
    assert_true(scope_allows(&s, "read", "x"));
}

static void test_admin_and_basic(void **state)
{
    struct fx *f = *state;
    struct principal p;
    const char *why;
    assert_int_equal(auth_authenticate(f->a, f->admin, "10.0.0.1", &p, &why), 0);
    assert_true(p.authenticated);
    assert_string_equal(p.actor, "admin");
    assert_true(auth_allows(f->a, &p, "write", "anything"));
    /* Basic with the token as password, any user name. */
    char basic[300], raw[160];
    int n = snprintf(raw, sizeof(raw), "ci-user:%s", f->admin + 7);
    unsigned char b64[256];
    EVP_EncodeBlock(b64, (const unsigned char *)raw, n);
    snprintf(basic, sizeof(basic), "Basic %s", b64);
    assert_int_equal(auth_authenticate(f->a, basic, "10.0.0.1", &p, &why), 0);
    assert_string_equal(p.actor, "admin");
}

static void test_bad_credentials(void **state)
{
    struct fx *f = *state;
    struct principal p;
    const char *why;
    assert_int_equal(auth_authenticate(f->a, NULL, "10.0.0.2", &p, &why), 1);
    assert_false(p.authenticated);
    const char *bad[] = {"Bearer arca_nope", "Bearer ", "Basic !!!!", "Basic bm9jb2xvbg==",
                         "Digest x", "garbage"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(auth_authenticate(f->a, bad[i], "10.0.0.2", &p, &why), ARCA_E_INVALID);
        assert_non_null(why);
        assert_false(p.authenticated);
    }
}

static void test_limiter(void **state)
{
    struct fx *f = *state;
    struct principal p;
    const char *why;
    for (int i = 0; i < AUTH_FAILURES_MAX; i++)
        assert_int_equal(auth_authenticate(f->a, "Bearer wrong", "10.0.0.3", &p, &why),
                         ARCA_E_INVALID);
    /* Now even the good token is refused from that address, but not from another. */
    assert_int_equal(auth_authenticate(f->a, f->admin, "10.0.0.3", &p, &why), ARCA_E_LIMITED);
    assert_int_equal(auth_authenticate(f->a, f->admin, "10.0.0.4", &p, &why), 0);
}

static void test_issue_scopes_expiry_revoke(void **state)
{
    struct fx *f = *state;
    struct token t;
    struct principal p;
    const char *why;
    char secret[AUTH_SECRET_LEN + 1], hdr[128];
    struct actor_ctx who = {"admin", "127.0.0.1:1", "r1"};
    memset(&t, 0, sizeof(t));
    snprintf(t.name, sizeof(t.name), "ci");
    snprintf(t.owner, sizeof(t.owner), "team");
    snprintf(t.scopes[0], sizeof(t.scopes[0]), "write@libs-*");
    t.nscopes = 1;
    assert_int_equal(auth_token_issue(f->a, &t, &who, secret), 0);
    assert_int_equal(strlen(secret), AUTH_SECRET_LEN);
    assert_int_equal(strncmp(secret, "arca_", 5), 0);
    snprintf(hdr, sizeof(hdr), "Bearer %s", secret);
    assert_int_equal(auth_authenticate(f->a, hdr, "10.0.0.5", &p, &why), 0);
    assert_string_equal(p.actor, "ci");
    assert_true(auth_allows(f->a, &p, "write", "libs-core"));
    assert_false(auth_allows(f->a, &p, "write", "apps"));
    assert_false(auth_allows(f->a, &p, "admin", NULL));
    /* The secret is not stored anywhere the index lists. */
    struct token got;
    assert_int_equal(repo_token_get(f->db, t.id, &got), 0);
    assert_string_equal(got.created_by, "admin");
    assert_int_equal(repo_token_revoke(f->db, t.id, &who, &got), 0);
    assert_true(got.revoked_ms > 0);
    assert_int_equal(auth_authenticate(f->a, hdr, "10.0.0.5", &p, &why), ARCA_E_INVALID);
    assert_string_equal(why, "revoked token");
    assert_string_equal(p.token_id, t.id);
    /* Revoking again is a no-op; an unknown id is not found. */
    assert_int_equal(repo_token_revoke(f->db, t.id, &who, NULL), 0);
    assert_int_equal(repo_token_revoke(f->db, "00000000000000000000000000000000", &who, NULL),
                     ARCA_E_NOTFOUND);
    /* Expiry. */
    memset(&t, 0, sizeof(t));
    snprintf(t.name, sizeof(t.name), "short");
    snprintf(t.owner, sizeof(t.owner), "team");
    snprintf(t.scopes[0], sizeof(t.scopes[0]), "read");
    t.nscopes = 1;
    t.expires_ms = time_now_ms() - 1;
    assert_int_equal(auth_token_issue(f->a, &t, &who, secret), 0);
    snprintf(hdr, sizeof(hdr), "Bearer %s", secret);
    assert_int_equal(auth_authenticate(f->a, hdr, "10.0.0.6", &p, &why), ARCA_E_INVALID);
    assert_string_equal(why, "expired token");
}

static void test_anonymous_read(void **state)
{
    struct fx *f = *state;
    struct principal p;
    const char *why;
    assert_int_equal(auth_authenticate(f->a, NULL, "10.0.0.7", &p, &why), 1);
    assert_true(auth_allows(f->a, &p, "read", "pub-x"));
    assert_true(auth_allows(f->a, &p, "read", "docs"));
    assert_false(auth_allows(f->a, &p, "read", "docs2"));
    assert_false(auth_allows(f->a, &p, "write", "pub-x"));
    assert_false(auth_allows(f->a, &p, "read", NULL));
}

static void test_reregister_after_index_loss(void **state)
{
    struct fx *f = *state;
    /* A fresh index with the same admin.token: the token is registered again. */
    auth_free(f->a);
    repo_db_free(f->db);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->index);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(repo_db_open(f->index, "dc1", &f->db), 0);
    int created = 1;
    assert_int_equal(auth_open(f->dir, f->db, "", &f->a, &created), 0);
    assert_int_equal(created, 0);
    struct principal p;
    const char *why;
    assert_int_equal(auth_authenticate(f->a, f->admin, "10.0.0.8", &p, &why), 0);
    char path[128];
    struct stat st;
    snprintf(path, sizeof(path), "%s/admin.token", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_replicate_scope(void **state)
{
    struct fx *f = *state;
    struct scope s;
    const char *why;
    assert_int_equal(scope_parse("replicate", &s, &why), 0);
    assert_string_equal(s.action, "replicate");
    assert_string_equal(s.repo_glob, "*");
    assert_int_equal(scope_parse("replicate@libs-*", &s, &why), 0);
    assert_int_equal(scope_parse("replicat", &s, &why), ARCA_E_INVALID);
    assert_non_null(strstr(why, "replicate"));
    /* A peer credential can do nothing but replicate. */
    struct principal p = {.authenticated = true, .nscopes = 1};
    assert_int_equal(scope_parse("replicate", &p.scopes[0], &why), 0);
    assert_true(auth_allows(f->a, &p, "replicate", NULL));
    assert_true(auth_allows(f->a, &p, "replicate", "libs"));
    const char *others[] = {"read", "write", "delete", "revoke", "deploy-record", "admin",
                            "promote:prod"};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        if (auth_allows(f->a, &p, others[i], "libs") || auth_allows(f->a, &p, others[i], NULL))
            fail_msg("replicate grants %s", others[i]);
    }
    /* ...except what anyone may read (anonymous_read is "pub-*, docs" here). */
    assert_true(auth_allows(f->a, &p, "read", "docs"));
    /* admin implies replicate. */
    assert_int_equal(scope_parse("admin", &p.scopes[0], &why), 0);
    assert_true(auth_allows(f->a, &p, "replicate", NULL));
}

static const char fp_a[] = "sha256/"
                           "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

static void cert_of(struct auth_cert *c, const char *cn, uint8_t first_byte)
{
    memset(c, 0, sizeof(*c));
    c->cn = cn;
    c->sha256[0] = first_byte;
}

static void test_certmap(void **state)
{
    struct fx *f = *state;
    struct principal p;
    struct auth_cert cert;
    char err[256];
    /* Nothing mapped yet: every certificate is anonymous. */
    cert_of(&cert, "ci-runner", 1);
    assert_int_equal(auth_authenticate_cert(f->a, &cert, &p), 1);
    assert_false(p.authenticated);
    assert_string_equal(p.actor, "anonymous");

    const char *keys[] = {"ci-runner", "replica.dc2", fp_a};
    const char *scopes[] = {"read@libs-*, write@libs-*", " replicate ,, ", "admin"};
    assert_int_equal(auth_certmap_set(f->a, 3, keys, scopes, err, sizeof(err)), 0);

    cert_of(&cert, "CI-Runner", 1); /* CN compares without case (X.520 caseIgnoreMatch) */
    assert_int_equal(auth_authenticate_cert(f->a, &cert, &p), 0);
    assert_true(p.authenticated);
    assert_string_equal(p.actor, "cert:ci-runner");
    assert_string_equal(p.token_id, "");
    assert_int_equal(p.nscopes, 2);
    assert_true(auth_allows(f->a, &p, "write", "libs-core"));
    assert_false(auth_allows(f->a, &p, "write", "apps"));
    assert_false(auth_allows(f->a, &p, "delete", "libs-core"));

    cert_of(&cert, "replica.dc2", 2);
    assert_int_equal(auth_authenticate_cert(f->a, &cert, &p), 0);
    assert_string_equal(p.actor, "cert:replica.dc2");
    assert_int_equal(p.nscopes, 1);
    assert_true(auth_allows(f->a, &p, "replicate", NULL));
    assert_false(auth_allows(f->a, &p, "read", "libs"));

    /* The fingerprint entry wins over the CN entry; the actor is the certificate's CN... */
    cert_of(&cert, "ci-runner", 0);
    assert_int_equal(hex_decode(fp_a + 7, 64, cert.sha256, 32), 0);
    assert_int_equal(auth_authenticate_cert(f->a, &cert, &p), 0);
    assert_string_equal(p.actor, "cert:ci-runner");
    assert_true(auth_allows(f->a, &p, "admin", NULL));
    /* ...or, without a plain CN, the fingerprint's first 16 hex digits. */
    cert.cn = NULL;
    assert_int_equal(auth_authenticate_cert(f->a, &cert, &p), 0);
    assert_string_equal(p.actor, "cert:sha256/0011223344556677");
    cert.cn = "a b";
    assert_int_equal(auth_authenticate_cert(f->a, &cert, &p), 0);
    assert_string_equal(p.actor, "cert:sha256/0011223344556677");

    /* Unmapped: a CA-valid certificate gets no rights. */
    cert_of(&cert, "stranger", 3);
    assert_int_equal(auth_authenticate_cert(f->a, &cert, &p), 1);
    assert_false(p.authenticated);
    assert_false(auth_allows(f->a, &p, "read", "libs"));
    cert.cn = NULL;
    assert_int_equal(auth_authenticate_cert(f->a, &cert, &p), 1);

    /* A reload replaces the mapping whole: ci-runner loses its rights on the next request. */
    const char *keys2[] = {"replica.dc2"};
    const char *scopes2[] = {"replicate"};
    assert_int_equal(auth_certmap_set(f->a, 1, keys2, scopes2, err, sizeof(err)), 0);
    cert_of(&cert, "ci-runner", 1);
    assert_int_equal(auth_authenticate_cert(f->a, &cert, &p), 1);
    /* Checking only (no auth) installs nothing; an empty mapping is allowed. */
    assert_int_equal(auth_certmap_set(NULL, 3, keys, scopes, err, sizeof(err)), 0);
    assert_int_equal(auth_authenticate_cert(f->a, &cert, &p), 1);
    assert_int_equal(auth_certmap_set(f->a, 0, NULL, NULL, err, sizeof(err)), 0);
    cert_of(&cert, "replica.dc2", 2);
    assert_int_equal(auth_authenticate_cert(f->a, &cert, &p), 1);
}

static void test_certmap_errors(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *key, *scopes, *needle;
    } cases[] = {
        {"ci", "read@libs, fly", "tls.clients.ci: scope 'fly': unknown scope action"},
        {"ci", "write@../x", "tls.clients.ci: scope 'write@../x'"},
        {"ci", " , ", "tls.clients.ci: give at least one scope"},
        {"a b", "read", "tls.clients.a b: not a subject CN"},
        {"cert:x", "read", "not a subject CN"},
        {"sha256/00", "read", "a fingerprint is sha256/ and 64 hex"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[256] = "";
        const char *k = cases[i].key, *sc = cases[i].scopes;
        assert_int_equal(auth_certmap_set(f->a, 1, &k, &sc, err, sizeof(err)), ARCA_E_CONFIG);
        if (!strstr(err, cases[i].needle))
            fail_msg("case %zu: error '%s' does not say '%s'", i, err, cases[i].needle);
    }
    /* Too many scopes, a key given twice; a failed set keeps the mapping it had. */
    char many[40 * 8] = "";
    for (int i = 0; i < TOKEN_SCOPES_MAX + 1; i++)
        strcat(many, "read,");
    char err[256];
    const char *k = "ci", *sc = many;
    assert_int_equal(auth_certmap_set(f->a, 1, &k, &sc, err, sizeof(err)), ARCA_E_CONFIG);
    assert_non_null(strstr(err, "at most"));
    const char *good_k[] = {"ci"}, *good_s[] = {"read"};
    assert_int_equal(auth_certmap_set(f->a, 1, good_k, good_s, err, sizeof(err)), 0);
    const char *dup_k[] = {"ci", "CI"}, *dup_s[] = {"read", "write"};
    assert_int_equal(auth_certmap_set(f->a, 2, dup_k, dup_s, err, sizeof(err)), ARCA_E_CONFIG);
    assert_non_null(strstr(err, "given twice"));
    struct auth_cert cert;
    struct principal p;
    cert_of(&cert, "ci", 9);
    assert_int_equal(auth_authenticate_cert(f->a, &cert, &p), 0);
    assert_false(auth_allows(f->a, &p, "write", "libs"));
}

static void test_bad_anonymous_glob(void **state)
{
    struct fx *f = *state;
    auth *a2 = NULL;
    int created;
    assert_int_equal(auth_open(f->dir, f->db, "ok-*, bad glob/", &a2, &created), ARCA_E_CONFIG);
    assert_null(a2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scope_parse),
        cmocka_unit_test(test_scope_allows),
        cmocka_unit_test_setup_teardown(test_admin_and_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limiter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issue_scopes_expiry_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anonymous_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reregister_after_index_loss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_anonymous_glob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replicate_scope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certmap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certmap_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
