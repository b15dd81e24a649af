// Happens-before annotations for the hand-overs between threads that ThreadSanitizer cannot
// see inside oneTBB, for TSan builds (AUGFLOW_SANITIZE=thread).
//
// Debian's libtbb.so is not built with -fsanitize=thread: the atomics through which it hands a
// task from the thread that spawns it to the thread that runs it, and returns from a wait, are
// invisible to TSan. oneTBB itself states those hand-overs for Intel's threading tools, and
// tsan/tbb_itt_bridge.cpp turns its statements into TSan edges: every task, parallel_for
// chunk, flow-graph message and wait is covered that way, precisely (see there). Two kinds of
// hand-over remain that oneTBB does not state, and augflow states them here:
// - arena.execute(f) from a thread that finds no free slot in the arena: oneTBB runs f on one
//   of the arena's threads while the caller waits inside libtbb.so (execute_in_arena below);
// - task memory that oneTBB's small-object pool recycles from one thread to another: an object
//   of augflow's that oneTBB builds there (a flow-graph message, pipeline/loader.cpp) claims its
//   memory (by cache line) before writing and hands it on when it is destroyed.
// The side that hands data over calls tbb_handoff_release(sync) after its last write, the side
// that takes it calls tbb_handoff_acquire(sync) before its first access, with `sync` an
// address tied to the data handed over, so that the edge orders only that data.
//
// Without TSan (every normal build) the functions are empty inline functions: they compile to
// nothing. The `sync` address is only a name for TSan's bookkeeping; it is never dereferenced.
//
// API: internal to augflow::common; not installed.
#pragma once

#include <type_traits>

#if defined(__SANITIZE_THREAD__)
#define AUGFLOW_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define AUGFLOW_TSAN 1
#endif
#endif

#if defined(AUGFLOW_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace augflow {

/// What this thread wrote so far happens before whatever follows a later
/// tbb_handoff_acquire(sync) on any thread. Call it where data is handed to oneTBB.
inline void tbb_handoff_release([[maybe_unused]] const void* sync) {
#if defined(AUGFLOW_TSAN)
  __tsan_release(const_cast<void*>(sync));
#endif
}

/// Everything before every earlier tbb_handoff_release(sync) happens before what this thread
/// does next. Call it where oneTBB hands the data back.
inline void tbb_handoff_acquire([[maybe_unused]] const void* sync) {
#if defined(AUGFLOW_TSAN)
  __tsan_acquire(const_cast<void*>(sync));
#endif
}

namespace tsan_detail {

/// The functor handed to arena.execute: its own address is the sync address, so that taking
/// the hand-over reads nothing the caller wrote.
template <typename Functor>
struct ArenaCall {
  Functor& functor;
  char to_caller = 0;  // only its address is used

  void operator()() const {
    tbb_handoff_acquire(this);
    struct Release {
      const void* sync;
      ~Release() { tbb_handoff_release(sync); }
    } const done{&to_caller};  // also when the functor throws
    functor();
  }
};

}  // namespace tsan_detail

/// arena.execute(functor) with its two hand-overs stated. When the calling thread cannot take
/// a slot in the arena (its threads are busy, e.g. with another epoch's graph), oneTBB runs the
/// functor on one of the arena's threads and the caller waits for it inside libtbb.so: what the
/// caller wrote before is handed to the functor, and what the functor wrote (or the exception
/// it threw) back to the caller. Takes any arena type, so that this header needs no oneTBB.
template <typename Arena, typename Functor>
void execute_in_arena(Arena& arena, Functor&& functor) {
  const tsan_detail::ArenaCall<std::remove_reference_t<Functor>> call{functor};
  struct Acquire {
    const void* sync;
    ~Acquire() { tbb_handoff_acquire(sync); }
  } const back{&call.to_caller};  // also when the functor throws
  tbb_handoff_release(&call);
  arena.execute(call);
}

}  // namespace augflow
