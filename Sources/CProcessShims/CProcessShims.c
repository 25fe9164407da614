#define _GNU_SOURCE
#include "CProcessShims.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

/// posix_spawn in a session of its own, stdin from `in`, stdout to `out` (-1: this
/// process's), stderr shared, no other descriptor inherited. A session of its own: with
/// sched_autogroup the CPU is shared between sessions first, so an evaluation (or a
/// heavy macro) in its parent's session would take the parent's share (a server could
/// then not answer quickly without taking CPU from a stacker).
static int spawn_in_session(const char *path, char *const argv[], int in, int out, pid_t *pid) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in, 0);
    if (out >= 0) posix_spawn_file_actions_adddup2(&actions, out, 1);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID);
    int e = posix_spawn(pid, path, &actions, &attributes, argv, environ);
    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
    return e;
}

int nx_spawn_worker(const char *path, char *const argv[], int *to_child, int *from_child, pid_t *pid) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0) return errno;
    if (pipe2(out, O_CLOEXEC) != 0) {
        int e = errno;
        close(in[0]); close(in[1]);
        return e;
    }
    int e = spawn_in_session(path, argv, in[0], out[1], pid);
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

int nx_spawn_session(const char *path, char *const argv[], int *to_child, pid_t *pid) {
    int in[2];
    if (pipe2(in, O_CLOEXEC) != 0) return errno;
    int e = spawn_in_session(path, argv, in[0], -1, pid);
    close(in[0]);
    if (e != 0) {
        close(in[1]);
        return e;
    }
    *to_child = in[1];
    return 0;
}

/// Every thread that exists already to `nice` (threads started later inherit their
/// creator's); never to a higher priority than a thread has.
static void set_threads_nice(int nice) {
    DIR *tasks = opendir("/proc/self/task");
    if (tasks) {
        struct dirent *t;
        while ((t = readdir(tasks)) != NULL) {
            if (t->d_name[0] == '.') continue;
            id_t tid = (id_t)atoi(t->d_name);
            errno = 0;
            int now = getpriority(PRIO_PROCESS, tid);
            if (errno == 0 && now < nice) setpriority(PRIO_PROCESS, tid, nice);
        }
        closedir(tasks);
    }
    id_t self = (id_t)syscall(SYS_gettid);
    errno = 0;
    int now = getpriority(PRIO_PROCESS, self);
    if (errno == 0 && now < nice) setpriority(PRIO_PROCESS, self, nice);
}

static unsigned long long set_slice(pid_t tid, unsigned long long nanoseconds);

int nx_worker_start(pid_t parent, int nice, int session_nice) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) return -1;  // the parent died before the line above
    // a worker is batch work: the kernel's default slice, not the short one of the
    // server thread that spawned it
    set_slice((pid_t)syscall(SYS_gettid), 0);
    if (nice > 0) set_threads_nice(nice > 19 ? 19 : nice);
    nx_set_session_nice(session_nice);
    return 0;
}

int nx_current_nice(void) {
    errno = 0;
    int n = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    return errno == 0 ? n : 0;
}

int nx_set_thread_nice(int nice) {
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice) == 0 ? 0 : errno;
}

int nx_lower_thread_priority(int by) {
    id_t self = (id_t)syscall(SYS_gettid);
    errno = 0;
    int now = getpriority(PRIO_PROCESS, self);
    if (errno != 0) return now;
    int target = now + by > 19 ? 19 : now + by;
    if (target > now) setpriority(PRIO_PROCESS, self, target);
    errno = 0;
    int after = getpriority(PRIO_PROCESS, self);
    return errno == 0 ? after : now;
}

/// This session's autogroup to `nice` when the process leads its session: 1 when set, 0
/// when there is nothing to set (not the session's leader, a kernel without
/// sched_autogroup), or minus an errno (a raise without CAP_SYS_NICE).
static int set_autogroup(int nice) {
    if (getsid(0) != getpid()) return 0;
    int fd = open("/proc/self/autogroup", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char text[16];
    int n = snprintf(text, sizeof text, "%d", nice);
    int done = write(fd, text, (size_t)n) == n ? 1 : -errno;
    close(fd);
    return done;
}

int nx_set_session_nice(int nice) {
    // With sched_autogroup (Debian's kernels), the CPU is shared first between sessions
    // and nice only orders the threads of one session: a process that leads its own
    // session (started by a service manager, setsid, or a harness) lowers the session's
    // share too, else a stacker in another session gets no more CPU than before.
    if (nice <= 0) return 0;
    return set_autogroup(nice > 19 ? 19 : nice) == 1;
}

int nx_set_cpu_priority(int nice) {
    if (nice < -20) nice = -20;
    if (nice > 19) nice = 19;
    // the session first: with sched_autogroup it is what decides between sessions, and a
    // refusal here (no CAP_SYS_NICE) leaves every thread as it was
    int session = set_autogroup(nice);
    if (session < 0) return -session;
    int failed = 0;
    DIR *tasks = opendir("/proc/self/task");
    if (tasks) {
        struct dirent *t;
        while ((t = readdir(tasks)) != NULL) {
            if (t->d_name[0] == '.') continue;
            if (setpriority(PRIO_PROCESS, (id_t)atoi(t->d_name), nice) != 0 && errno != ESRCH) failed = errno;
        }
        closedir(tasks);
    }
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice) != 0) failed = errno;
    return failed;
}

int nx_lower_cpu_priority(int nice) {
    if (nice <= 0) return 0;
    if (nice > 19) nice = 19;
    set_threads_nice(nice);
    return nx_set_session_nice(nice) ? 3 : 1;
}

// The kernel's struct sched_attr (sched_setattr(2)); glibc 2.36 declares neither.
struct nx_sched_attr {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
    uint32_t sched_util_min, sched_util_max;
};

static unsigned long long set_slice(pid_t tid, unsigned long long nanoseconds) {
    struct nx_sched_attr a;
    memset(&a, 0, sizeof a);
    if (syscall(SYS_sched_getattr, tid, &a, sizeof a, 0) != 0) return 0;
    if (a.sched_policy != 0 /* SCHED_OTHER */) return 0;
    a.size = sizeof a;
    a.sched_flags = 0;  // keeps nice, priority and policy as read above
    a.sched_runtime = nanoseconds;
    if (syscall(SYS_sched_setattr, tid, &a, 0) != 0) return 0;
    memset(&a, 0, sizeof a);
    if (syscall(SYS_sched_getattr, tid, &a, sizeof a, 0) != 0) return 0;
    return a.sched_runtime;
}

unsigned long long nx_set_thread_slice(unsigned long long nanoseconds) {
    return set_slice((pid_t)syscall(SYS_gettid), nanoseconds);
}

int nx_forgo_raising_priority(void) {
    // the bounding set first (needs CAP_SETPCAP, which root has): else a program run as
    // root (an evaluation worker) would get CAP_SYS_NICE back at exec
    if (prctl(PR_CAPBSET_READ, CAP_SYS_NICE, 0, 0, 0) == 1) (void)prctl(PR_CAPBSET_DROP, CAP_SYS_NICE, 0, 0, 0);
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &header, data) != 0) return errno;
    uint32_t bit = 1u << (CAP_SYS_NICE % 32);
    struct __user_cap_data_struct *d = &data[CAP_SYS_NICE / 32];
    if (!((d->effective | d->permitted | d->inheritable) & bit)) return 0;
    d->effective &= ~bit;
    d->permitted &= ~bit;
    d->inheritable &= ~bit;
    return syscall(SYS_capset, &header, data) == 0 ? 0 : errno;
}
