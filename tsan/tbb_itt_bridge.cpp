// Turns oneTBB's own synchronisation notes into ThreadSanitizer happens-before edges.
//
// Debian's libtbb.so is not built with TSan, so the hand-over of a task from the thread that
// spawns it to the thread that runs it, and the return of a wait, go through atomics TSan
// cannot see. oneTBB states exactly these hand-overs for Intel's threading tools through the
// ITT API: the headers (with TBB_USE_PROFILING_TOOLS=2, which TSan builds define) note
// "releasing" on a task when it is spawned or submitted and on a wait context when a task
// finishes, and libtbb.so notes "acquired" on the task when a thread takes it and on the wait
// context when the wait returns. libtbb.so forwards these notes to the library named by
// INTEL_LIBITTNOTIFY64, for the groups in INTEL_ITTNOTIFY_GROUPS. This is that library:
// releasing -> __tsan_release, acquired -> __tsan_acquire, on the same address. Each edge is
// one oneTBB itself guarantees, between the two threads it names; nothing is suppressed.
//
// Every TSan-built executable links it (CMakeLists.txt), and its constructor points the two
// variables at it before main, unless they are already set; libtbb.so reads them when its
// scheduler first starts. Child processes inherit them: the tests start only augflow's own
// TSan-built binaries. (A program without TSan that uses oneTBB would try to load this
// library, which needs libtsan, and should be started with the variables removed.)
#include <dlfcn.h>
#include <stdlib.h>

#include <sanitizer/tsan_interface.h>

extern "C" {

// ITT's entry points, looked up by name. __itt_api_version marks an ITT collector of version 1,
// whose functions libtbb.so takes one by one.
__attribute__((visibility("default"))) const char* __itt_api_version() { return "augflow TSan bridge 1"; }
__attribute__((visibility("default"))) void __itt_sync_releasing(void* address) { __tsan_release(address); }
__attribute__((visibility("default"))) void __itt_sync_acquired(void* address) { __tsan_acquire(address); }
// "prepare" (about to wait), "cancel" (gave up waiting) and "destroy" order nothing.
__attribute__((visibility("default"))) void __itt_sync_prepare(void*) {}
__attribute__((visibility("default"))) void __itt_sync_cancel(void*) {}
__attribute__((visibility("default"))) void __itt_sync_destroy(void*) {}

}  // extern "C"

namespace {

__attribute__((constructor)) void point_libtbb_here() {
  Dl_info self{};
  if (dladdr(reinterpret_cast<void*>(&__itt_sync_acquired), &self) == 0 || self.dli_fname == nullptr) return;
  setenv("INTEL_LIBITTNOTIFY64", self.dli_fname, 0);
  setenv("INTEL_ITTNOTIFY_GROUPS", "sync", 0);
}

}  // namespace
