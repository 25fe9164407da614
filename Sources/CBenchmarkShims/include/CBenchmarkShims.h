// CBenchmarkShims: the plain C Lua function the bridge benchmark compares a Swift
// function against (the same work: check two numbers, return their sum).
#ifndef NXLUA_CBENCHMARKSHIMS_H
#define NXLUA_CBENCHMARKSHIMS_H
#include <lua5.4/lua.h>
int nxbench_add(lua_State *L);
#endif
