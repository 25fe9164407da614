#ifndef C_PROCESS_SHIMS_H
#define C_PROCESS_SHIMS_H

#include <sys/types.h>

/// Starts `path` with `argv` (NULL-terminated) and the current environment as a worker
/// process: its stdin reads what the parent writes to `*to_child`, its stdout goes to
/// `*from_child`, its stderr is the parent's, and no other descriptor of the parent
/// reaches it (an inherited descriptor of an HDF5 file would keep the file's lock held
/// after the parent closed it). The parent's ends are close-on-exec. The worker leads a
/// session of its own (sched_autogroup: its CPU share is then not taken from the
/// parent's session; see nx_worker_start). Returns 0 or an errno.
int nx_spawn_worker(const char *path, char *const argv[], int *to_child, int *from_child, pid_t *pid);

/// Starts `path` with `argv` (NULL-terminated) and the current environment in a session
/// of its own (sched_autogroup: its CPU share is not taken from this process's session):
/// its stdin reads what the parent writes to `*to_child` (close-on-exec here), its stdout
/// and stderr are the parent's, and no other descriptor reaches it. The child calls
/// nx_worker_start first. Returns 0 or an errno.
int nx_spawn_session(const char *path, char *const argv[], int *to_child, pid_t *pid);
/// Called first thing in a worker process: it is killed (SIGKILL) when the parent's
/// thread that started it ends, with the parent or whatever the cause, and runs at
/// `nice` with every thread it has or starts; its session's autogroup (it leads one) at
/// `session_nice`. Returns 0, or -1 when the parent is already gone.
int nx_worker_start(pid_t parent, int nice, int session_nice);

/// When this process leads its session: the session's autogroup to `nice` (1...19).
/// Returns 1 when set, else 0.
int nx_set_session_nice(int nice);

/// Lowers the CPU priority of this process (every thread it has or starts) to `nice`
/// (1...19; never raises a thread's priority). When the process leads its own session,
/// the session's autogroup is set to `nice` too (sched_autogroup shares the CPU between
/// sessions first). Returns 0 when nothing was changed (`nice` <= 0), else 1, or 3 when
/// the autogroup was set as well.
int nx_lower_cpu_priority(int nice);

/// Sets every thread of this process (and those it starts) to `nice` (-20...19), higher
/// or lower than now, and its session's autogroup too when the process leads its
/// session. A priority above the current one needs CAP_SYS_NICE (root) or RLIMIT_NICE.
/// Returns 0, or an errno (EPERM, EACCES: not allowed; nothing was raised then).
int nx_set_cpu_priority(int nice);

/// Gives up CAP_SYS_NICE for the calling thread, the threads it starts and the processes
/// it runs (effective, permitted, inheritable and bounding sets): nothing started later
/// can raise its priority again. libdispatch sets an absolute nice value on each thread
/// it starts, from its QoS class (-4 to 0 when it may, as root), which took a reader's
/// request threads back above a stacker it had yielded to. Without CAP_SYS_NICE (not
/// root) a thread cannot raise its priority anyway (RLIMIT_NICE aside): then nothing
/// changes. Returns 0, or an errno.
int nx_forgo_raising_priority(void);

/// Lowers the calling thread's priority by `by` nice steps (at most to 19); returns its
/// nice value after.
int nx_lower_thread_priority(int by);

/// The nice value of the calling thread (the server's, inherited by a worker).
int nx_current_nice(void);
/// This thread's nice value to `nice`: 0, or the errno of setpriority.
int nx_set_thread_nice(int nice);

/// The calling thread's scheduler slice (Linux 6.12+, EEVDF: `sched_attr.sched_runtime`
/// of a SCHED_OTHER thread), in nanoseconds; 0 returns it to the kernel's default. A
/// thread with a shorter slice is picked sooner after it wakes, at the same share of the
/// CPU (its nice value and its session's still decide how much it gets). Threads it
/// starts, and processes it spawns, inherit the slice. Returns the slice in effect after
/// the call, 0 when the kernel has no such setting (older kernels keep their behaviour).
unsigned long long nx_set_thread_slice(unsigned long long nanoseconds);

#endif
