#include "CBenchmarkShims.h"
#include <lua5.4/lauxlib.h>

int nxbench_add(lua_State *L) {
    lua_pushnumber(L, luaL_checknumber(L, 1) + luaL_checknumber(L, 2));
    return 1;
}
