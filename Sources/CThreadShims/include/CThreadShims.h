#ifndef C_THREAD_SHIMS_H
#define C_THREAD_SHIMS_H

/// Sets the nice value of the calling thread only (Linux schedules threads one by one:
/// setpriority on the thread id, which Swift cannot get, as gettid and syscall are not
/// imported). Raising it (lower priority) needs no privilege. Returns 0 or an errno.
int nx_set_thread_nice(int nice);

/// The calling thread's nice value.
int nx_thread_nice(void);

#endif
