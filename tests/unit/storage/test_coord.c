/* Unit tests for storage/coord.c: every rejection class and the accepted edges. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "arca_err.h"
#include "coord.h"

#include <string.h>

static int seg(const char *s, size_t len)
{
    const char *why = NULL;
    int rc = coord_segment_check(s, len, &why);
    if (rc != 0)
        assert_non_null(why);
    return rc;
}

static int segs(const char *s)
{
    return seg(s, strlen(s));
}

static int repo(const char *s)
{
    const char *why = NULL;
    int rc = coord_repo_check(s, strlen(s), &why);
    if (rc != 0)
        assert_non_null(why);
    return rc;
}

static int path(const char *s)
{
    const char *why = NULL;
    int rc = coord_path_check(s, strlen(s), &why);
    if (rc != 0)
        assert_non_null(why);
    return rc;
}

static void test_segment_accepts(void **state)
{
    (void)state;
    assert_int_equal(segs("a"), 0);
    assert_int_equal(segs("lib-1.2.3_final+build.tar.gz"), 0);
    assert_int_equal(segs("..."), 0);
    assert_int_equal(segs(".hidden"), 0);
    assert_int_equal(segs("a..b"), 0);
    assert_int_equal(segs("\xc3\xa9"), 0);             /* é */
    assert_int_equal(segs("\xe2\x82\xac"), 0);         /* € */
    assert_int_equal(segs("\xf0\x9f\x98\x80"), 0);     /* U+1F600 */
    assert_int_equal(segs("\xf4\x8f\xbf\xbf"), 0);     /* U+10FFFF, the last code point */
    assert_int_equal(segs("\xed\x9f\xbf"), 0);         /* U+D7FF, just below the surrogates */
    assert_int_equal(segs("\xee\x80\x80"), 0);         /* U+E000, just above */
    assert_int_equal(segs("with space"), 0);
    char buf[COORD_SEGMENT_MAX + 2];
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(seg(buf, COORD_SEGMENT_MAX), 0);
    assert_int_equal(seg(buf, COORD_SEGMENT_MAX + 1), ARCA_E_INVALID);
}

static void test_segment_rejects(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(seg("", 0), ARCA_E_INVALID);
    assert_int_equal(segs("."), ARCA_E_INVALID);
    assert_int_equal(coord_segment_check("..", 2, &why), ARCA_E_INVALID);
    assert_string_equal(why, "segment is '..'");
    assert_int_equal(segs("a/b"), ARCA_E_INVALID);
    assert_int_equal(segs("a\\b"), ARCA_E_INVALID);
    assert_int_equal(seg("a\0b", 3), ARCA_E_INVALID);
    for (int c = 1; c < 0x20; c++) {
        char s[3] = {'a', (char)c, 0};
        assert_int_equal(segs(s), ARCA_E_INVALID);
    }
    assert_int_equal(segs("a\x7f"), ARCA_E_INVALID);
    /* Invalid UTF-8. */
    assert_int_equal(segs("\xc0\xae"), ARCA_E_INVALID);         /* overlong '.' */
    assert_int_equal(segs("\xc1\xbf"), ARCA_E_INVALID);         /* overlong */
    assert_int_equal(segs("\xe0\x80\xaf"), ARCA_E_INVALID);     /* overlong '/' */
    assert_int_equal(segs("\xf0\x80\x80\xaf"), ARCA_E_INVALID); /* overlong '/' */
    assert_int_equal(segs("\xed\xa0\x80"), ARCA_E_INVALID);     /* U+D800 */
    assert_int_equal(segs("\xed\xbf\xbf"), ARCA_E_INVALID);     /* U+DFFF */
    assert_int_equal(segs("\xf4\x90\x80\x80"), ARCA_E_INVALID); /* U+110000 */
    assert_int_equal(segs("\xf5\x80\x80\x80"), ARCA_E_INVALID);
    assert_int_equal(segs("\xff"), ARCA_E_INVALID);
    assert_int_equal(segs("\x80"), ARCA_E_INVALID);             /* lone continuation */
    assert_int_equal(segs("a\xc3"), ARCA_E_INVALID);            /* truncated */
    assert_int_equal(segs("\xe2\x82"), ARCA_E_INVALID);         /* truncated */
    assert_int_equal(segs("\xf0\x9f\x98"), ARCA_E_INVALID);     /* truncated */
    assert_int_equal(segs("\xe2\x28\xa1"), ARCA_E_INVALID);     /* bad continuation */
    /* A NULL why is allowed. */
    assert_int_equal(coord_segment_check(".", 1, NULL), ARCA_E_INVALID);
}


/* Characters no upload may put in a name; reads keep the general rule (coord_set). */
static void test_new_name_rule(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "a\xc2\x80", /* U+0080 */
        "a\xc2\x85" "b", /* U+0085 NEL */
        "\xc2\x9f", /* U+009F */
        "\xd8\x9c", /* U+061C */
        "a\xe2\x80\x8e", /* U+200E LRM */
        "\xe2\x80\x8f", /* U+200F RLM */
        "\xe2\x80\xa8", /* U+2028 */
        "\xe2\x80\xa9", /* U+2029 */
        "x\xe2\x80\xae" "y.exe", /* U+202E RLO */
        "\xe2\x81\xa6", /* U+2066 */
        "\xe2\x81\xa9", /* U+2069 */
    };
    static const char *const good[] = {
        "\xc2\xa0", /* U+00A0 */
        "\xd8\x9b", /* U+061B */
        "\xe2\x80\x8d", /* U+200D ZWJ (emoji) */
        "\xe2\x80\xa7", /* U+2027 */
        "\xe2\x80\xaf", /* U+202F */
        "\xe2\x81\xa5", /* U+2065 */
        "\xe2\x81\xaa", /* U+206A */
    };
    struct coord c;
    const char *why = NULL;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* Accepted by the general rule, so a stored name stays reachable... */
        assert_int_equal(segs(bad[i]), 0);
        /* ...and refused for a new upload, in the name, the version or the path. */
        assert_int_equal(coord_set(&c, "r", bad[i], "1", "f", &why), 0);
        assert_int_equal(coord_new_name_check(&c, &why), ARCA_E_INVALID);
        assert_int_equal(coord_set(&c, "r", "n", bad[i], "f", &why), 0);
        assert_int_equal(coord_new_name_check(&c, &why), ARCA_E_INVALID);
        assert_int_equal(coord_set(&c, "r", "n", "1", bad[i], &why), 0);
        assert_int_equal(coord_new_name_check(&c, &why), ARCA_E_INVALID);
        assert_non_null(strstr(why, "bidirectional"));
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(coord_set(&c, "r", "n", "1", good[i], &why), 0);
        assert_int_equal(coord_new_name_check(&c, &why), 0);
    }
}

static void test_repo_key(void **state)
{
    (void)state;
    assert_int_equal(repo("a"), 0);
    assert_int_equal(repo("0"), 0);
    assert_int_equal(repo("libs-release_1.x"), 0);
    char buf[COORD_REPO_MAX + 2];
    memset(buf, 'r', sizeof(buf));
    buf[COORD_REPO_MAX] = '\0';
    assert_int_equal(repo(buf), 0);
    buf[COORD_REPO_MAX] = 'r';
    buf[COORD_REPO_MAX + 1] = '\0';
    assert_int_equal(repo(buf), ARCA_E_INVALID);
    assert_int_equal(repo(""), ARCA_E_INVALID);
    assert_int_equal(repo("."), ARCA_E_INVALID);
    assert_int_equal(repo(".."), ARCA_E_INVALID);
    assert_int_equal(repo("-a"), ARCA_E_INVALID);
    assert_int_equal(repo("_a"), ARCA_E_INVALID);
    assert_int_equal(repo(".a"), ARCA_E_INVALID);
    assert_int_equal(repo("a/b"), ARCA_E_INVALID);
    assert_int_equal(repo("a b"), ARCA_E_INVALID);
    assert_int_equal(repo("\xc3\xa9"), ARCA_E_INVALID);
    assert_int_equal(repo("a\\b"), ARCA_E_INVALID);
    assert_int_equal(repo("a+b"), ARCA_E_INVALID);
}

static void test_path(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(path("a"), 0);
    assert_int_equal(path("a/b/c.jar"), 0);
    assert_int_equal(path("dir/\xc3\xa9t\xc3\xa9.txt"), 0);
    assert_int_equal(path(""), ARCA_E_INVALID);
    assert_int_equal(path("/a"), ARCA_E_INVALID);
    assert_int_equal(path("a/"), ARCA_E_INVALID);
    assert_int_equal(path("/"), ARCA_E_INVALID);
    assert_int_equal(path("a//b"), ARCA_E_INVALID);
    assert_int_equal(path("a/./b"), ARCA_E_INVALID);
    assert_int_equal(coord_path_check("a/../b", 6, &why), ARCA_E_INVALID);
    assert_string_equal(why, "segment is '..'");
    assert_int_equal(path(".."), ARCA_E_INVALID);
    assert_int_equal(path("a/b\\c"), ARCA_E_INVALID);
    assert_int_equal(path("a/b\x01"), ARCA_E_INVALID);
    assert_int_equal(path("a/\xc0\xae\xc0\xae/b"), ARCA_E_INVALID);

    /* Depth: 32 segments pass, 33 fail. */
    char deep[200];
    size_t n = 0;
    for (int i = 0; i < COORD_PATH_DEPTH; i++) {
        if (i)
            deep[n++] = '/';
        deep[n++] = 'd';
    }
    deep[n] = '\0';
    assert_int_equal(path(deep), 0);
    memcpy(deep + n, "/d", 3);
    assert_int_equal(path(deep), ARCA_E_INVALID);

    /* Length: 1024 bytes pass, 1025 fail (segments of at most 255 bytes). */
    char longp[COORD_PATH_MAX + 2];
    memset(longp, 'p', sizeof(longp));
    for (size_t i = 200; i < sizeof(longp); i += 200)
        longp[i] = '/';
    longp[COORD_PATH_MAX] = '\0';
    assert_int_equal(path(longp), 0);
    longp[COORD_PATH_MAX] = 'p';
    longp[COORD_PATH_MAX + 1] = '\0';
    assert_int_equal(path(longp), ARCA_E_INVALID);

    /* A path segment is limited like any segment. */
    char fat[300];
    memset(fat, 'f', sizeof(fat));
    fat[0] = 'a';
    fat[1] = '/';
    fat[2 + 256] = '\0';
    assert_int_equal(path(fat), ARCA_E_INVALID);
    fat[2 + 255] = '\0';
    assert_int_equal(path(fat), 0);
}

static void test_set(void **state)
{
    (void)state;
    struct coord c;
    const char *why = NULL;
    assert_int_equal(coord_set(&c, "libs", "app", "1.0", "bin/app.tar.gz", &why), 0);
    assert_string_equal(c.repo, "libs");
    assert_string_equal(c.name, "app");
    assert_string_equal(c.version, "1.0");
    assert_string_equal(c.path, "bin/app.tar.gz");
    assert_int_equal(coord_set(&c, "libs", "app", "1.0", NULL, &why), 0);
    assert_string_equal(c.path, "");

    static const struct coord zero;
    assert_int_equal(coord_set(&c, "libs", "app", "..", "x", &why), ARCA_E_INVALID);
    assert_memory_equal(&c, &zero, sizeof(c));
    assert_int_equal(coord_set(&c, "-libs", "app", "1", "x", &why), ARCA_E_INVALID);
    assert_int_equal(coord_set(&c, "libs", "a/b", "1", "x", &why), ARCA_E_INVALID);
    assert_int_equal(coord_set(&c, "libs", "app", "1", "x//y", &why), ARCA_E_INVALID);
    assert_int_equal(coord_set(&c, "libs", "app", "1", "", &why), ARCA_E_INVALID);
    assert_int_equal(coord_set(&c, NULL, "app", "1", "x", &why), ARCA_E_INVALID);
    assert_memory_equal(&c, &zero, sizeof(c));

    /* Every field at its maximum fits the struct. */
    char r[COORD_REPO_MAX + 1], s[COORD_SEGMENT_MAX + 1], p[COORD_PATH_MAX + 1];
    memset(r, 'r', COORD_REPO_MAX);
    r[COORD_REPO_MAX] = '\0';
    memset(s, 's', COORD_SEGMENT_MAX);
    s[COORD_SEGMENT_MAX] = '\0';
    memset(p, 'p', COORD_PATH_MAX);
    for (size_t i = 250; i < COORD_PATH_MAX; i += 250)
        p[i] = '/';
    p[COORD_PATH_MAX] = '\0';
    assert_int_equal(coord_set(&c, r, s, s, p, &why), 0);
    assert_int_equal(strlen(c.path), COORD_PATH_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_segment_accepts), cmocka_unit_test(test_segment_rejects),
        cmocka_unit_test(test_repo_key),        cmocka_unit_test(test_path),
        cmocka_unit_test(test_set),             cmocka_unit_test(test_new_name_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
