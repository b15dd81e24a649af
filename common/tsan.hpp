// Happens-before annotations for the hand-overs that oneTBB makes where ThreadSanitizer cannot
// see them.
//
// Debian's libtbb.so is not built with -fsanitize=thread: a task spawned by one thread and run
// by another, a flow-graph message queued by one node body and taken by the next, the end of a
// parallel_for's chunks and the return of the call that waits for them all synchronise through
// atomics inside that library. TSan then sees data written before a hand-over and read after it
// as a race. At each such hand-over augflow's code states the edge itself: the side that hands
// data over calls tbb_handoff_release(sync) after its last write, the side that takes it calls
// tbb_handoff_acquire(sync) before its first read, with `sync` an address tied to the data
// handed over (the message, the batch's storage, the chunk loop), so that the edge orders only
// that data, as oneTBB itself does. Nothing else is ordered: a race between two node bodies or
// two chunks that oneTBB does not order either is still reported.
//
// Without TSan (every normal build) both functions are empty inline functions: they compile to
// nothing. The `sync` address is only a name for TSan's bookkeeping; it is never dereferenced.
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
// TSan's dynamic annotations (its runtime defines them; no header declares them).
extern "C" void AnnotateIgnoreWritesBegin(const char* file, int line);
extern "C" void AnnotateIgnoreWritesEnd(const char* file, int line);
#endif

namespace augflow {

/// True in a ThreadSanitizer build.
inline constexpr bool kTsanBuild =
#if defined(AUGFLOW_TSAN)
    true;
#else
    false;
#endif

/// What this thread wrote so far happens before whatever a later tbb_handoff_acquire(sync) on
/// any thread is followed by. Call it where data is handed to oneTBB (before spawning the work
/// that reads it, at the end of a node body or chunk that wrote it).
inline void tbb_handoff_release([[maybe_unused]] const void* sync) {
#if defined(AUGFLOW_TSAN)
  __tsan_release(const_cast<void*>(sync));
#endif
}

/// Everything before every earlier tbb_handoff_release(sync) happens before what this thread
/// does next. Call it where oneTBB hands data back (at the start of a node body or chunk, after
/// parallel_for, wait or wait_for_all returns).
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

/// While it lives, TSan records none of this thread's plain writes. Only for building oneTBB
/// objects (flow-graph nodes and edges) that oneTBB itself then hands to its threads: the
/// first task that touches a node may be one of oneTBB's own (a buffer's forward task), spawned
/// inside libtbb.so where no annotation can go, so TSan would see the node's construction race
/// with oneTBB's first use of it. Reads, atomics and other threads are still checked.
class UnrecordedTbbConstruction {
 public:
#if defined(AUGFLOW_TSAN)
  UnrecordedTbbConstruction() { AnnotateIgnoreWritesBegin(__FILE__, __LINE__); }
  ~UnrecordedTbbConstruction() { AnnotateIgnoreWritesEnd(__FILE__, __LINE__); }
#else
  UnrecordedTbbConstruction() = default;
#endif
  UnrecordedTbbConstruction(const UnrecordedTbbConstruction&) = delete;
  UnrecordedTbbConstruction& operator=(const UnrecordedTbbConstruction&) = delete;
};

}  // namespace augflow
