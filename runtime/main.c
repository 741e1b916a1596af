/* main.c — the `apr` executable: an embedded LuaJIT that runs lua/apr/cli.lua.
 *
 * The runtime is linked into this executable and its symbols are exported
 * (-rdynamic), so Lua reaches it through ffi.C with no library to find. The
 * Lua files are found next to the executable (a source checkout or a bundle)
 * or in ../share/apr/lua (an installed copy), never through the current
 * directory, so `apr` behaves the same wherever it is run from. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "apr.h"

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The directory holding lua/apr/cli.lua: beside the executable, or in
 * ../share/apr relative to it. Returns 0 on success. */
static int find_home(char *home, size_t size)
{
    char exe[PATH_MAX], probe[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return -1;
    *slash = '\0';
    const char *candidates[] = { "", "/../share/apr" };
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++) {
        snprintf(probe, sizeof probe, "%s%s/lua/apr", exe, candidates[i]);
        if (is_dir(probe)) {
            snprintf(home, size, "%s%s", exe, candidates[i]);
            return 0;
        }
    }
    return -1;
}

/* Lua modules come first from apr's own tree, then from the bundle's lib/,
 * then from the system's default locations (busted, luv and cjson installed
 * by Debian). */
static void set_paths(lua_State *L, const char *home)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s/lib/lua/?.lua;%s/lib/lua/?/init.lua;%s",
                    home, home, home, home, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
    lua_getfield(L, -1, "cpath");
    lua_pushfstring(L, "%s/lib/lua/?.so;%s", home, lua_tostring(L, -1));
    lua_setfield(L, -3, "cpath");
    lua_pop(L, 2);
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

int main(int argc, char **argv)
{
    char home[PATH_MAX];
    if (find_home(home, sizeof home) != 0) {
        fprintf(stderr, "apr: cannot find its Lua files (lua/apr) next to the executable\n");
        return 1;
    }
    /* A closed pipe (apr pass | head) ends output quietly instead of killing us. */
    signal(SIGPIPE, SIG_IGN);
    /* A file-size limit (ulimit -f) makes a write fail with EFBIG, reported
     * like a full disk, instead of killing apr halfway through a file. */
    signal(SIGXFSZ, SIG_IGN);
    apr_interrupt_install();

    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "apr: cannot create the Lua state (out of memory)\n");
        return 1;
    }
    luaL_openlibs(L);
    set_paths(L, home);
    lua_pushstring(L, home);
    lua_setglobal(L, "APR_HOME");

    /* cli.main(argv) returns the exit code; an uncaught Lua error is a bug
     * in apr, so its traceback is printed in full. */
    lua_pushcfunction(L, traceback);
    lua_getglobal(L, "require");
    lua_pushstring(L, "apr.cli");
    int rc = 1;
    if (lua_pcall(L, 1, 1, -3) != 0) {
        fprintf(stderr, "apr: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return 1;
    }
    lua_getfield(L, -1, "main");
    lua_createtable(L, argc, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    if (lua_pcall(L, 1, 1, -4) != 0) {
        fprintf(stderr, "apr: internal error: %s\n", lua_tostring(L, -1));
        rc = 1;
    } else {
        rc = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : 0;
    }
    /* Flush Lua's buffered stdout before the state goes away; a failure here
     * (disk full, closed pipe) is an error the user must see. */
    if (fflush(stdout) != 0 && errno != EPIPE) {
        fprintf(stderr, "apr: writing output: %s\n", strerror(errno));
        rc = 1;
    }
    lua_close(L);
    return rc;
}
