#include "model/kernel_profile.hpp"

#include <atomic>

namespace augflow::model {
namespace {
std::atomic<KernelProfile*> attached{nullptr};
}  // namespace

KernelProfile* kernel_profile() { return attached.load(std::memory_order_relaxed); }
void attach_kernel_profile(KernelProfile* profile) { attached.store(profile, std::memory_order_relaxed); }

}  // namespace augflow::model
