#define _GNU_SOURCE
#include "CProcessShims.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

int nx_spawn_worker(const char *path, char *const argv[], int *to_child, int *from_child, pid_t *pid) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0) return errno;
    if (pipe2(out, O_CLOEXEC) != 0) {
        int e = errno;
        close(in[0]); close(in[1]);
        return e;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    int e = posix_spawn(pid, path, &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    close(out[1]);
    if (e != 0) {
        close(in[1]); close(out[0]);
        return e;
    }
    *to_child = in[1];
    *from_child = out[0];
    return 0;
}

int nx_worker_start(pid_t parent, int nice) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) return -1;  // the parent died before the line above
    // every thread that exists already (threads started later inherit their creator's)
    DIR *tasks = opendir("/proc/self/task");
    if (tasks) {
        struct dirent *t;
        while ((t = readdir(tasks)) != NULL) {
            if (t->d_name[0] != '.') setpriority(PRIO_PROCESS, (id_t)atoi(t->d_name), nice);
        }
        closedir(tasks);
    }
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice);
    return 0;
}
