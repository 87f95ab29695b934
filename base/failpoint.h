// Failpoints: named places in banger where a test can make the process crash
// (`_exit` with no cleanup) or fail (the call site returns an error), to show
// that the next run converges from there (docs/testing.md, "Failpoints").
//
// Every point is registered in one table (failpoint.cc, `kPoints`) with what
// it means and which sweep test covers it. They are inert unless armed,
// through the environment (banger reads it once at start-up):
//
//   BANGER_FAILPOINTS=image.publish.before_rename=crash,engine.boot_vm.before=error
//   BANGER_FAILPOINTS=state.tx.before_commit=crash@3   # the third hit crashes
//
// An unarmed point costs one relaxed atomic load. An armed point fires once,
// at its Nth hit (default the first).
#pragma once

#include <atomic>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace banger::failpoint {

/// The exit status of a process a `crash` failpoint ended.
inline constexpr int kCrashExitCode = 86;

/// Which sweep test (docs/testing.md) drives a point. A point may be in
/// several; every point is in at least one (failpoint_test.cc checks).
enum Sweep : unsigned {
  kEngineSweep = 1,    // in-process engine, fake runtime (reconciler/failpoint_sweep_itest.cc)
  kVmSweep = 2,        // the banger binary with real QEMU VMs (tests/e2e/failpoint_sweep_test.cc)
  kArtifactSweep = 4,  // the banger binary: image pull, kernel pull (tests/e2e/failpoint_sweep_test.cc)
  kFirecrackerSweep = 8,  // the Firecracker provider against its API contract (providers/firecracker_sweep_test.cc)
};

struct Point {
  std::string_view name;     // <area>.<step>
  std::string_view meaning;  // where exactly it fires, for docs/testing.md
  unsigned sweeps;           // Sweep bits
};

enum class Mode { kOff, kCrash, kError };

/// Every registered point, in the order of the table.
const std::vector<Point>& All();
bool IsRegistered(std::string_view name);

/// Arms the points in `spec` ("NAME=MODE[@N],..."; MODE crash|error). An
/// unknown name or mode is InvalidArgument and arms nothing.
Status Configure(std::string_view spec);
/// Configure(getenv("BANGER_FAILPOINTS")); OK when it is unset or empty.
Status ConfigureFromEnvironment();
/// Arms one point (tests). `nth` = fire at the nth hit.
Status Arm(std::string_view name, Mode mode, int nth = 1);
void DisarmAll();
/// Whether `name` fired since it was armed (tests: an error injected where
/// the caller only logs it still counts as reached).
bool Fired(std::string_view name);

namespace internal {
extern std::atomic<bool> any_armed;
Status HitSlow(std::string_view name);
}  // namespace internal

/// Whether any point is armed (one relaxed load): lets a call site skip
/// building a point's name.
inline bool AnyArmed() { return internal::any_armed.load(std::memory_order_relaxed); }

/// The failpoint `name`: OK unless armed. Armed `crash`: writes one line
/// naming it to stderr and `_exit(kCrashExitCode)`. Armed `error`: returns
/// Unavailable("failpoint NAME: injected error").
inline Status Hit(std::string_view name) {
  if (!internal::any_armed.load(std::memory_order_relaxed)) return OkStatus();
  return internal::HitSlow(name);
}

}  // namespace banger::failpoint

/// Returns the failpoint's error from the enclosing function (Status or Result).
#define BANGER_FAILPOINT(name) BANGER_RETURN_IF_ERROR(::banger::failpoint::Hit(name))
